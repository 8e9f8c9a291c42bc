from tests.client import RpcClient


def test_echo_hi(client: RpcClient) -> None:
    collected = client.run_to_exit(["echo", "hi"])
    assert collected.stdout == b"hi\n"
    assert collected.exit is not None and collected.exit["code"] == 0
