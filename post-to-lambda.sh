#!/usr/bin/env bash
# Deploy the zip built by package.sh to an existing Lambda function:
#
#   1. aws lambda update-function-code once any earlier update has finished (and check
#      the CodeSha256 Lambda reports)
#   2. wait until the update has finished
#   3. aws lambda publish-version (of exactly that code)
#   4. point the alias (default live, created if missing) at the new version
#   5. optionally (--smoke-test) a dry-run invocation of the new version
#
# Prints the function, version, alias and CodeSha256.
#
# Usage: ./post-to-lambda.sh [--zip PATH] [--alias NAME] [--smoke-test]
#
#   --zip PATH     the package (default dist/ec2-powercycle-<version>.zip, as package.sh names it)
#   --alias NAME   the alias to move (default live; AWS_LAMBDA_ALIAS)
#   --smoke-test   invoke the new version with InvocationType=DryRun: Lambda checks that
#                  the version exists and that the caller may invoke it, and runs no code,
#                  so nothing is started or stopped (SMOKE_TEST=true does the same)
#
# Headless when these are set; otherwise it prompts for the missing ones on a terminal
# (the secret without echo), and fails with exit code 2 when there is no terminal (CI):
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   (or AWS_PROFILE, or AWS_WEB_IDENTITY_TOKEN_FILE)
#   AWS_DEFAULT_REGION                         (or AWS_REGION)
#   AWS_LAMBDA_FUNCTION                        the function's name or ARN
# Optional: AWS_SESSION_TOKEN, AWS_ENDPOINT_URL (an emulator), AWS_CLI (default aws),
# PYTHON (for the local SHA-256; default python3, else openssl is used).
set -euo pipefail

readonly EXIT_CONFIG=2

die() {
    printf 'post-to-lambda.sh: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

zip_path="${AWS_LAMBDA_ZIP:-}"
alias_name="${AWS_LAMBDA_ALIAS:-live}"
case "${SMOKE_TEST:-false}" in
    true | 1 | yes) smoke_test=true ;;
    false | 0 | no | "") smoke_test=false ;;
    *) die "SMOKE_TEST must be true or false, not '${SMOKE_TEST}'" ;;
esac

while (($# > 0)); do
    case "$1" in
        --zip)
            (($# > 1)) || die "--zip needs a path"
            zip_path="$2"
            shift
            ;;
        --alias)
            (($# > 1)) || die "--alias needs a name"
            alias_name="$2"
            shift
            ;;
        --smoke-test) smoke_test=true ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1' (see ./post-to-lambda.sh --help)" ;;
    esac
    shift
done

cd "$(dirname "${BASH_SOURCE[0]}")"

# --- Settings: from the environment, else asked for on a terminal ---------------------
if [[ -z "${AWS_DEFAULT_REGION:-}" && -n "${AWS_REGION:-}" ]]; then
    export AWS_DEFAULT_REGION="$AWS_REGION"
fi

credentials_from_elsewhere=false
if [[ -n "${AWS_PROFILE:-}" || -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ]]; then
    credentials_from_elsewhere=true
fi

missing=()
[[ -n "${AWS_LAMBDA_FUNCTION:-}" ]] || missing+=(AWS_LAMBDA_FUNCTION)
[[ -n "${AWS_DEFAULT_REGION:-}" ]] || missing+=(AWS_DEFAULT_REGION)
if [[ "$credentials_from_elsewhere" == false ]]; then
    [[ -n "${AWS_ACCESS_KEY_ID:-}" ]] || missing+=(AWS_ACCESS_KEY_ID)
    [[ -n "${AWS_SECRET_ACCESS_KEY:-}" ]] || missing+=(AWS_SECRET_ACCESS_KEY)
fi

if ((${#missing[@]} > 0)); then
    if [[ ! -t 0 ]]; then
        printf 'post-to-lambda.sh: error: %s not set, and no terminal to ask on.\n' "${missing[*]}" >&2
        printf 'Set them in the environment to run headless, e.g. docker run --env AWS_LAMBDA_FUNCTION=... (see ./post-to-lambda.sh --help).\n' >&2
        exit "$EXIT_CONFIG"
    fi
    for name in "${missing[@]}"; do
        value=""
        if [[ "$name" == AWS_SECRET_ACCESS_KEY ]]; then
            read -r -s -p "$name (not shown): " value || true
            printf '\n' >&2
        else
            read -r -p "$name: " value || true
        fi
        [[ -n "$value" ]] || {
            printf 'post-to-lambda.sh: error: %s is needed\n' "$name" >&2
            exit "$EXIT_CONFIG"
        }
        export "$name=$value"
    done
fi
function_name="$AWS_LAMBDA_FUNCTION"

[[ "$alias_name" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] ||
    die "alias '$alias_name' is not a valid Lambda alias name (letters, digits, - and _, not only digits)"

# --- The package -------------------------------------------------------------------
if [[ -z "$zip_path" ]]; then
    version="${VERSION:-$(sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' ec2_powercycle.py 2>/dev/null | head -n 1)}"
    [[ -n "$version" ]] || die "cannot tell the version: pass --zip PATH"
    zip_path="dist/ec2-powercycle-$version.zip"
fi
[[ -f "$zip_path" ]] || die "$zip_path not found: build it with ./package.sh (or pass --zip PATH)"

sha256_base64() {
    local python="${PYTHON:-python3}"
    if command -v "$python" >/dev/null 2>&1; then
        "$python" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 -binary "$1" | openssl base64 -A
        printf '\n'
    else
        die "need python3 or openssl to compute the package's SHA-256"
    fi
}
local_sha="$(sha256_base64 "$zip_path")"

# --- The AWS CLI -------------------------------------------------------------------
aws_cli="${AWS_CLI:-aws}"
command -v "$aws_cli" >/dev/null 2>&1 ||
    die "AWS CLI not found ('$aws_cli'): install it (pip install awscli, or the AWS CLI v2 installer) or set AWS_CLI"
export AWS_PAGER=""
aws_args=(--region "$AWS_DEFAULT_REGION" --output text)
if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
    aws_args+=(--endpoint-url "$AWS_ENDPOINT_URL")
fi
lambda() {
    "$aws_cli" "${aws_args[@]}" lambda "$@"
}

scratch="$(mktemp -d "${TMPDIR:-/tmp}/post-to-lambda.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# --- 1. Code -----------------------------------------------------------------------
# A function whose last update (a stack update, say) is still running refuses new code.
lambda wait function-updated --function-name "$function_name" ||
    die "cannot use function $function_name in $AWS_DEFAULT_REGION (see above)"
echo "post-to-lambda.sh: uploading $zip_path to $function_name in $AWS_DEFAULT_REGION" >&2
uploaded_sha="$(lambda update-function-code --function-name "$function_name" \
    --zip-file "fileb://$zip_path" --query CodeSha256)" ||
    die "update-function-code failed for $function_name (see above)"
[[ "$uploaded_sha" == "$local_sha" ]] ||
    die "Lambda reports CodeSha256 $uploaded_sha, but $zip_path has $local_sha"

# --- 2. Wait -----------------------------------------------------------------------
lambda wait function-updated --function-name "$function_name" ||
    die "the code update of $function_name did not finish successfully"

# --- 3. Version --------------------------------------------------------------------
new_version="$(lambda publish-version --function-name "$function_name" --code-sha256 "$local_sha" \
    --description "ec2-powercycle $(basename "$zip_path" .zip)" --query Version)" ||
    die "publish-version failed for $function_name"
[[ "$new_version" =~ ^[0-9]+$ ]] || die "publish-version returned '$new_version', not a version number"

# --- 4. Alias ----------------------------------------------------------------------
if lambda get-alias --function-name "$function_name" --name "$alias_name" \
    --query FunctionVersion >"$scratch/alias" 2>"$scratch/alias-error"; then
    echo "post-to-lambda.sh: moving alias $alias_name from version $(cat "$scratch/alias") to $new_version" >&2
    alias_arn="$(lambda update-alias --function-name "$function_name" --name "$alias_name" \
        --function-version "$new_version" --query AliasArn)" || die "update-alias failed"
elif grep -q ResourceNotFoundException "$scratch/alias-error"; then
    echo "post-to-lambda.sh: creating alias $alias_name at version $new_version" >&2
    alias_arn="$(lambda create-alias --function-name "$function_name" --name "$alias_name" \
        --function-version "$new_version" --query AliasArn)" || die "create-alias failed"
else
    cat "$scratch/alias-error" >&2
    die "could not read alias $alias_name of $function_name"
fi

# --- 5. Smoke test -----------------------------------------------------------------
if [[ "$smoke_test" == true ]]; then
    echo "post-to-lambda.sh: dry-run invocation of version $new_version" >&2
    status="$(lambda invoke --function-name "$function_name" --qualifier "$new_version" \
        --invocation-type DryRun --query StatusCode "$scratch/response")" ||
        die "the dry-run invocation of version $new_version failed"
    [[ "$status" == 204 ]] || die "the dry-run invocation of version $new_version answered $status, not 204"
    echo "post-to-lambda.sh: version $new_version can be invoked" >&2
fi

printf 'function: %s\n' "$function_name"
printf 'version: %s\n' "$new_version"
printf 'alias: %s -> %s (%s)\n' "$alias_name" "$new_version" "$alias_arn"
printf 'CodeSha256: %s\n' "$local_sha"
