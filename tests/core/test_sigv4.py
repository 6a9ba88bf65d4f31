"""Our SigV4 signature equals botocore's (the AWS SDK's own signer) byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from postback.core.sigv4 import sign_request

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-west-1.amazonaws.com/",
        "http://127.0.0.1:5000/",
        "https://x.test/a b?z=1&a=2",
    ],
)
def test_signature_matches_botocore(url: str) -> None:
    body = b"Action=Publish&Message=%7B%22a%22%3A1%7D&TopicArn=arn%3Aaws%3Asns%3Aeu-west-1%3A1%3At"
    content_type = "application/x-www-form-urlencoded; charset=utf-8"
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": content_type})
    SigV4Auth(Credentials(KEY_ID, SECRET), "sns", "eu-west-1").add_auth(request)
    # botocore reads the clock itself; sign ours at the same second.
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = sign_request(
        method="POST",
        url=url,
        headers={"content-type": content_type},
        body=body,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        region="eu-west-1",
        service="sns",
        now=when,
    )
    assert request.headers["Authorization"] == ours["authorization"]
