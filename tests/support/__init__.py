"""What the tests, the benchmark (bench/) and the demo (tools/demo.py) share.

Importable as ``tests.support.<module>`` with the repository root on sys.path (pytest's
``pythonpath = ["."]``; bench/run.py and tools/demo.py put it there themselves):

* ``ec2_endpoint``: a fast EC2 Query-API endpoint on 127.0.0.1 (benchmarks, fault tests), and
  EC2's error XML (``error_xml``).
* ``local_endpoint``: moto_server on 127.0.0.1 for end-to-end runs, and the dummy credentials.
* ``sample_fleet``: the demo's sample fleet and a loopback server for schedule documents.
* ``fleet``: launching tagged instances in moto in process (the ``fleet`` fixture).
* ``faults``: EC2 errors injected at botocore's ``before-send`` hook, and a recorder of API calls
  (the ``api`` fixture).
* ``deploy``: the packaging and deployment tests' helpers (the repository, the venv's tools, package.sh).

Only loopback is ever contacted. Importing this package loads nothing; ``ec2_endpoint``,
``local_endpoint`` and ``sample_fleet`` need only the standard library.
"""
