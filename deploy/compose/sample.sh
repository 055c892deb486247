#!/bin/sh
# One-shot set-up of the compose stack's sample (docker-compose.yml, service `sample`): a MinIO bucket holding
# generated CloudTrail logs, laid out as a trail writes them, and one registered source per account and region.
# Safe to run again: logs are generated only into an empty bucket, and adding a source again only updates it.
set -eu

BUCKET=${SAMPLE_BUCKET:-cloudtrail}
ACCOUNTS=${SAMPLE_ACCOUNTS:-3}
REGIONS=${SAMPLE_REGIONS:-us-east-1,eu-west-1}
SEED=${SAMPLE_SEED:-7}
EVENTS=${SAMPLE_EVENTS:-20000}

empty=$(python - "$BUCKET" <<'PY'
import os
import sys

import boto3

s3 = boto3.client("s3", endpoint_url=os.environ.get("TRAILHOUSE_S3_ENDPOINT_URL"))
bucket = sys.argv[1]
try:
    s3.create_bucket(Bucket=bucket)
except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
    pass
print("yes" if s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0) == 0 else "no")
PY
)

if [ "$empty" = yes ]; then
    trailhouse generate "s3://$BUCKET" --events "$EVENTS" --accounts "$ACCOUNTS" --regions "$REGIONS" --seed "$SEED"
else
    echo "s3://$BUCKET already holds logs: no sample generated"
fi

for account in $(python -c "from trailhouse.generate import account_ids; print(*account_ids($ACCOUNTS, $SEED))"); do
    for region in $(echo "$REGIONS" | tr ',' ' '); do
        trailhouse sources add --account "$account" --region "$region" --bucket "s3://$BUCKET"
    done
done
