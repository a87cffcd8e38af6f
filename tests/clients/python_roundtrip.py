"""Round trip through a Python client generated from openapi/openapi.json by
openapi-python-client (scripts/check-clients.sh generates it and runs this
against a real server): topics, JSON produce with key and headers, read,
a queue subscription, pull, ack, nack, and a problem document as a typed
value.

    python_roundtrip.py BASE_URL TOKEN   (the generated package on sys.path)
"""
import io
import sys

from weir_client import AuthenticatedClient
from weir_client.api.messages import produce, produce_raw, read
from weir_client.api.subscriptions import ack, get_subscription, nack, pull, put_subscription
from weir_client.api.topics import get_topic, list_topics, put_topic
from weir_client.models import (AckRequest, ErrorCode, Mode, NackRequest, Problem, ProduceRequest,
                                ProduceRequestMessagesItem, ProduceResponse, PullRequest, StartName,
                                SubscriptionSpec, TopicSpec)
from weir_client.models.produce_message_headers_type_0 import ProduceMessageHeadersType0
from weir_client.types import File


def check(condition, what):
    if not condition:
        sys.exit(f"python client round trip failed: {what}")
    print(f"ok   - {what}")


def main():
    base, token = sys.argv[1], sys.argv[2]
    client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)

    created = put_topic.sync("py-orders", client=client, body=TopicSpec(partitions=1))
    check(not isinstance(created, Problem) and created.name == "py-orders", "create a topic")

    headers = ProduceMessageHeadersType0()
    headers["trace-id"] = "abc"
    message = ProduceRequestMessagesItem(key="customer-7", value={"order": 1}, headers=headers)
    produced = produce.sync("py-orders", client=client, body=ProduceRequest(messages=[message]))
    check(isinstance(produced, ProduceResponse) and produced.results[0].offset == 0,
          "produce JSON with a key and headers")
    keyed = client.with_headers({"Weir-Key": "customer-8"})
    raw = produce_raw.sync("py-orders", client=keyed, body=File(payload=io.BytesIO(b"\x00\x01raw")))
    check(isinstance(raw, ProduceResponse) and raw.results[0].offset == 1, "produce raw bytes")

    got = read.sync("py-orders", 0, client=client, offset=0, limit=10)
    first = got.messages[0]
    check(first.key == "customer-7" and first.value == {"order": 1}
          and first.headers.additional_properties.get("trace-id") == "abc",
          "read the message back with its key, value and headers")
    check(got.messages[1].value_b64 == "AAFyYXc=", "read the raw message as base64")

    names = [t.name for t in list_topics.sync(client=client).topics]
    check("py-orders" in names, "list topics")

    spec = SubscriptionSpec(mode=Mode.QUEUE, start=StartName.EARLIEST, ack_timeout_ms=30000)
    sub = put_subscription.sync("py-orders", "billing", client=client, body=spec)
    check(not isinstance(sub, Problem) and sub.name == "billing", "create a queue subscription")

    leased = pull.sync("py-orders", "billing", client=client, body=PullRequest(max_messages=10))
    check(len(leased.messages) == 2 and leased.messages[0].attempt == 1, "pull leases both messages")
    acked = ack.sync("py-orders", "billing", client=client,
                     body=AckRequest(ack_ids=[leased.messages[0].ack_id]))
    check(acked.acked == 1, "ack one")
    nacked = nack.sync("py-orders", "billing", client=client,
                       body=NackRequest(ack_ids=[leased.messages[1].ack_id], reason="try later", delay_ms=0))
    check(nacked.acked == 1, "nack the other")
    again = pull.sync("py-orders", "billing", client=client, body=PullRequest(max_messages=10, wait_ms=5000))
    check(len(again.messages) == 1 and again.messages[0].attempt == 2 and again.messages[0].offset == 1,
          "the nacked message comes back as attempt 2")
    stats = get_subscription.sync("py-orders", "billing", client=client)
    check(stats.stats.in_flight == 1, "subscription stats")

    missing = get_topic.sync("no-such-topic", client=client)
    check(isinstance(missing, Problem) and missing.code == ErrorCode.TOPIC_NOT_FOUND and missing.status == 404,
          "an unknown topic is a typed Problem with code topic_not_found")
    anonymous = AuthenticatedClient(base_url=base, token="wrong-token")
    refused = list_topics.sync(client=anonymous)
    check(isinstance(refused, Problem) and refused.code == ErrorCode.UNAUTHORIZED, "a wrong token is a typed 401 Problem")


if __name__ == "__main__":
    main()
