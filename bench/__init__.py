"""Benchmarks of ec2-powercycle: see bench/run.py."""
