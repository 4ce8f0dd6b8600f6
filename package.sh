#!/usr/bin/env bash
# Build the Lambda deployment zip from the working tree:
#
#   dist/ec2-powercycle-<version>.zip
#     ec2_powercycle.py
#     README.md
#     lib/   the runtime dependencies (requirements.txt less boto3, which the
#            Lambda runtime provides), installed with pip install --target for
#            the Lambda's platform and Python version
#     __pycache__/, lib/**/__pycache__/   their byte code for the Lambda's Python
#            (*.cpython-313.pyc, checked-hash), when that Python is here
#
# The zip is reproducible: the same tree (and the same pinned requirements,
# and the same Python for the byte code) gives a byte-identical file. Prints
# its path, size, SHA-256 in base64 (the form Lambda reports as CodeSha256)
# and the byte code it holds.
#
# Usage: ./package.sh [--with-boto3] [--platform TAG] [--python-version X.Y] [--output-dir DIR]
#
#   --with-boto3          also vendor boto3/botocore/s3transfer (default: use the runtime's)
#   --platform TAG        wheel platform (default manylinux2014_x86_64; arm64 Lambdas:
#                         manylinux2014_aarch64)
#   --python-version X.Y  the Lambda runtime's Python (default 3.13, template.yaml's python3.13)
#   --output-dir DIR      where the zip goes (default dist)
#
# Environment: PYTHON (the interpreter whose pip is used; default python3),
# PYC_PYTHON (the interpreter that compiles the byte code; it must be CPython of
# the --python-version; default python3.13, i.e. python<X.Y>; without one the
# zip carries no byte code and Lambda compiles the module at every cold start),
# VERSION (default: __version__ of ec2_powercycle.py), SOURCE_DATE_EPOCH (time
# stamp of every entry; default 1980-01-02T00:00:00Z), and pip's own PIP_*
# variables (PIP_INDEX_URL, PIP_FIND_LINKS, ...).
set -euo pipefail

die() {
    printf 'package.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

with_boto3=false
platform="${LAMBDA_PLATFORM:-manylinux2014_x86_64}"
python_version="${LAMBDA_PYTHON_VERSION:-3.13}"
output_dir="dist"

while (($# > 0)); do
    case "$1" in
        --with-boto3) with_boto3=true ;;
        --platform)
            (($# > 1)) || die "--platform needs a value, e.g. manylinux2014_aarch64"
            platform="$2"
            shift
            ;;
        --python-version)
            (($# > 1)) || die "--python-version needs a value, e.g. 3.12"
            python_version="$2"
            shift
            ;;
        --output-dir)
            (($# > 1)) || die "--output-dir needs a value"
            output_dir="$2"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1' (see ./package.sh --help)" ;;
    esac
    shift
done

[[ "$python_version" =~ ^3\.[0-9]+$ ]] || die "--python-version must look like 3.13, not '$python_version'"

cd "$(dirname "${BASH_SOURCE[0]}")"
root="$(pwd)"

# --- Tools -------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 ||
    die "Python not found ('$PYTHON'): install Python 3 (Debian/Ubuntu: apt-get install python3 python3-pip) or set PYTHON"
"$PYTHON" -m pip --version >/dev/null 2>&1 ||
    die "pip not found for $PYTHON: install it (Debian/Ubuntu: apt-get install python3-pip; or use a venv: make setup, then PYTHON=.venv/bin/python)"
command -v zip >/dev/null 2>&1 ||
    die "zip not found: install it (Debian/Ubuntu: apt-get install zip; Alpine: apk add zip; macOS: brew install zip)"

for file in ec2_powercycle.py README.md requirements.txt lambda-constraints.txt; do
    [[ -f "$file" ]] || die "$file not found in $root: run package.sh from a checkout of ec2-powercycle"
done

# --- Version -----------------------------------------------------------------------
if [[ -z "${VERSION:-}" ]]; then
    VERSION="$(sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' ec2_powercycle.py | head -n 1)"
    [[ -n "$VERSION" ]] || die "no __version__ = \"...\" line in ec2_powercycle.py; set VERSION"
fi
[[ "$VERSION" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "version '$VERSION' is not usable in a file name"

epoch="${SOURCE_DATE_EPOCH:-315619200}"
if ! [[ "$epoch" =~ ^[0-9]+$ ]] || ((epoch < 315532800)); then
    die "SOURCE_DATE_EPOCH must be whole seconds since 1970, 1980 or later (zip cannot store earlier times)"
fi
stamp="$(TZ=UTC "$PYTHON" -c 'import sys, time; print(time.strftime("%Y%m%d%H%M.%S", time.gmtime(int(sys.argv[1]))))' "$epoch")"

# --- Stage -------------------------------------------------------------------------
staging="$(mktemp -d "${TMPDIR:-/tmp}/ec2-powercycle-package.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
tree="$staging/tree"
mkdir -p "$tree/lib"

requirements="$staging/requirements.txt"
if [[ "$with_boto3" == true ]]; then
    cp requirements.txt "$requirements"
else
    # boto3 and its own parts come with the Lambda runtime.
    grep -viE '^[[:space:]]*(boto3|botocore|s3transfer)([^A-Za-z0-9_.-]|$)' requirements.txt >"$requirements" || true
fi

echo "package.sh: installing runtime dependencies for Python $python_version on $platform" >&2
"$PYTHON" -m pip install \
    --quiet --disable-pip-version-check --no-warn-conflicts --no-warn-script-location \
    --no-compile --only-binary=:all: \
    --platform "$platform" --python-version "$python_version" --implementation cp \
    --target "$tree/lib" \
    --requirement "$requirements" --constraint lambda-constraints.txt ||
    die "pip could not install the runtime dependencies (see above)"

# Nothing that differs between machines or runs: console scripts (their first line
# names this machine's Python), byte code (pip's, if any: the runtime's is compiled
# below), pip's install records.
rm -rf "$tree/lib/bin"
find "$tree/lib" -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +
find "$tree/lib" -path '*.dist-info/*' \
    \( -name RECORD -o -name INSTALLER -o -name REQUESTED -o -name direct_url.json \) -delete

cp ec2_powercycle.py README.md "$tree/"

# --- Byte code -------------------------------------------------------------------
# Lambda's code directory is read-only and Python cannot cache what it compiles
# there, so without .pyc files every cold start compiles ec2_powercycle.py and
# lib/ from source. Only an interpreter of the runtime's version can write byte
# code the runtime uses (the magic number is fixed within a 3.X series). The
# checked-hash mode makes the files independent of time stamps (the zip's are
# fixed); Python uses a file only while it matches its source's hash, so a
# source edited later (say in the Lambda console) is compiled, never ignored.
# -I ignores PYTHONPYCACHEPREFIX, PYTHONOPTIMIZE and the like; relative paths
# keep the staging directory out of the files. The output does not depend on
# the hash seed or on process state (the tests build twice and compare).
pyc_tag="cpython-${python_version/./}"
pyc_python="${PYC_PYTHON:-python$python_version}"
pyc_found=""
if command -v "$pyc_python" >/dev/null 2>&1; then
    pyc_found="$("$pyc_python" -I -S -c 'import platform, sys; print(sys.implementation.cache_tag, platform.python_version())' 2>/dev/null)" || pyc_found=""
fi
bytecode="none"
if [[ "${pyc_found%% *}" == "$pyc_tag" ]]; then
    echo "package.sh: compiling byte code ($pyc_tag, checked-hash) with $pyc_python (Python ${pyc_found#* })" >&2
    (cd "$tree" && "$pyc_python" -I -S -m compileall -q -o 0 --invalidation-mode checked-hash ec2_powercycle.py lib) >&2 ||
        die "$pyc_python could not compile the package (see above): it would not import on the Lambda's Python either"
    bytecode="$pyc_tag, checked-hash (Python ${pyc_found#* })"
elif [[ -n "${PYC_PYTHON:-}" ]]; then
    echo "package.sh: PYC_PYTHON ($PYC_PYTHON) is not a working CPython $python_version${pyc_found:+ (it is ${pyc_found%% *})}: the zip carries no bytecode; cold starts compile the module" >&2
else
    echo "package.sh: no python$python_version: the zip carries no bytecode; cold starts compile the module (set PYC_PYTHON to include it)" >&2
fi

# Fixed modes and times; fixed order; no extra attributes (uid/gid, extended times).
find "$tree" -type d -exec chmod 0755 {} +
find "$tree" -type f -exec chmod 0644 {} +
find "$tree" -exec env TZ=UTC touch -t "$stamp" {} +

mkdir -p "$output_dir"
zip_path="$(cd "$output_dir" && pwd)/ec2-powercycle-$VERSION.zip"
partial="$staging/package.zip"
(
    cd "$tree"
    find . -type f | sed 's|^\./||' | LC_ALL=C sort |
        TZ=UTC zip -q -X -D -9 "$partial" -@
) || die "zip failed"
mv -f "$partial" "$zip_path"

# --- Report ------------------------------------------------------------------------
size="$(wc -c <"$zip_path" | tr -d ' ')"
sha256="$("$PYTHON" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$zip_path")"
printf 'zip: %s\n' "$zip_path"
printf 'size: %s bytes\n' "$size"
printf 'sha256 (base64, as Lambda CodeSha256): %s\n' "$sha256"
printf 'bytecode: %s\n' "$bytecode"
