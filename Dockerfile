# Build-and-deploy image: packages the function from this tree (package.sh), then
# pushes the zip to an existing Lambda function (post-to-lambda.sh).
#
#   docker build -t ec2powercycle .
#   docker run --env "AWS_ACCESS_KEY_ID=<access_key_id>" \
#              --env "AWS_SECRET_ACCESS_KEY=<access_key_secret>" \
#              --env "AWS_DEFAULT_REGION=<region>" \
#              --env "AWS_LAMBDA_FUNCTION=<function_name>" \
#              -it ec2powercycle
#
# Without those variables it prompts for them (hence -it). Arguments after the image
# name go to post-to-lambda.sh, e.g. `-it ec2powercycle --smoke-test`.

# The Lambda runtime's Python (python3.13 in template.yaml; package.sh's default --python-version).
FROM python:3.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# zip for package.sh; the AWS CLI (the version requirements-dev.txt pins) for post-to-lambda.sh.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends zip=3.0-13 \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir awscli==1.46.3 \
    && groupadd --gid 10001 deploy \
    && useradd --uid 10001 --gid 10001 --create-home deploy \
    && install -d -o 10001 -g 10001 /home/deploy/ec2-powercycle

WORKDIR /home/deploy/ec2-powercycle
COPY --chown=10001:10001 . .
USER 10001

ENTRYPOINT ["/bin/bash", "-c", "./package.sh && exec ./post-to-lambda.sh \"$@\"", "post-to-lambda.sh"]
