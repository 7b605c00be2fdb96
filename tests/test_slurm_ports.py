"""The Ray ports of a SLURM job (orchestrator/slurm_job.py), without SLURM: each job's and each node's block
is its own, and the check before Ray starts tells a port someone listens on from one the run before a requeue
left in TIME_WAIT (which Ray's servers bind through, as they set SO_REUSEADDR)."""
import socket

import pytest

from orchestrator.slurm_job import PORT_NODE, SlurmJobError, _check_ports_free, _taken, ports_of


def _values(ports: dict) -> set:
    return set(range(ports["min-worker-port"], ports["max-worker-port"] + 1)) | \
        {v for k, v in ports.items() if not k.endswith("worker-port")}


def test_two_jobs_and_the_nodes_of_one_job_never_share_a_port():
    blocks = [_values(ports_of(job, index)) for job in ("41", "42", "140") for index in range(4)]
    assert all(len(block) == PORT_NODE for block in blocks)  # every port of the node's block is used once
    assert len(set().union(*blocks)) == sum(map(len, blocks))  # and no two blocks overlap
    assert all(20000 <= p < 60000 for block in blocks for p in block)


def _ports_at(port: int) -> dict:
    return {"port": port, "min-worker-port": port + 1, "max-worker-port": port + 1}


def test_a_port_left_in_time_wait_is_free_and_one_listened_on_is_not():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's servers (Ray's) listen
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert _taken("127.0.0.1", _ports_at(port)) == [port]
    with pytest.raises(SlurmJobError, match=rf"ports \[{port}\] on 127.0.0.1 are in use"):
        _check_ports_free("127.0.0.1", _ports_at(port), wait_s=0)
    # the server side closes first: its end of the connection stays in TIME_WAIT on the port for a minute
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    listener.close()
    accepted.close()
    client.recv(1)
    client.close()
    with socket.socket() as plain:  # a bind without SO_REUSEADDR is refused: what made a requeue wait a minute
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    assert _taken("127.0.0.1", _ports_at(port)) == []
    _check_ports_free("127.0.0.1", _ports_at(port), wait_s=0)
