"""Per-record callbacks and TensorBoard event files, read back by protobuf's own decoder."""

import struct

import jax
import numpy as np
import pytest

import decjax
from decjax import monitor


def test_crc32c_matches_the_standard_check_value():
    assert monitor._crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check
    assert monitor._crc32c(b"") == 0


def test_per_record_calls_once_per_record_with_its_step():
    calls = []
    callback = monitor.per_record(lambda step, v: calls.append((step, v)), eval_every=5)
    callback(20, {"train_loss": np.array([0.4, 0.3]), "acc": np.array([0.8, 0.9])})
    assert calls == [(15, {"train_loss": 0.4, "acc": 0.8}), (20, {"train_loss": 0.3, "acc": 0.9})]
    calls.clear()
    callback(10, {"train_loss": np.array([[1.0, 2.0], [3.0, 4.0]])})  # a sweep of 2 runs
    assert [c[0] for c in calls] == [5, 10]
    np.testing.assert_array_equal(calls[0][1]["train_loss"], [1.0, 3.0])


def _event_class():
    """The Event, Summary and Summary.Value messages (field numbers of TensorFlow's
    event.proto / summary.proto), built with protobuf's descriptor pool."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="event_test.proto", package="t")
    value = proto.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL)
    summary = proto.message_type.add(name="Summary")
    summary.field.add(
        name="value", number=1, type=F.TYPE_MESSAGE, type_name=".t.Value", label=F.LABEL_REPEATED
    )
    event = proto.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    event.field.add(
        name="summary",
        number=5,
        type=F.TYPE_MESSAGE,
        type_name=".t.Summary",
        label=F.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event"))


def _read(path, event_class):
    """TFRecord framing checked (lengths and masked CRC-32C), each record parsed."""
    data, events = path.read_bytes(), []

    def masked(crc):
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    while data:
        (length,) = struct.unpack("<Q", data[:8])
        assert struct.unpack("<I", data[8:12])[0] == masked(monitor._crc32c(data[:8]))
        body = data[12 : 12 + length]
        assert struct.unpack("<I", data[12 + length : 16 + length])[0] == masked(
            monitor._crc32c(body)
        )
        events.append(event_class.FromString(body))
        data = data[16 + length :]
    return events


def test_tensorboard_writes_what_simulate_records(tmp_path):
    Event = _event_class()
    ds = decjax.data.load_digits()
    n = 4
    model = decjax.problems.logistic_regression(64, 10)
    board = monitor.TensorBoard(tmp_path / "run", eval_every=5)
    res = decjax.simulate(
        model.loss,
        decjax.replicate(model.init(jax.random.key(0)), n),
        decjax.dpsgd(0.1, decjax.ring(n)),
        decjax.data.distribute(ds, n, "iid", key=0),
        steps=20,
        eval_every=5,
        chunks=2,
        batch_size=8,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
        callback=board,
    )
    (path,) = board.files
    events = _read(path, Event)
    assert events[0].file_version == "brain.Event:2"
    scalars = {}
    for event in events[1:]:
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    assert set(scalars) == set(res.metrics)
    steps = [s for s, _ in scalars["train_loss"]]
    assert steps == list(res.steps) == [5, 10, 15, 20]
    for name, values in res.metrics.items():
        np.testing.assert_allclose([v for _, v in scalars[name]], values, rtol=1e-6)


def test_tensorboard_writes_one_folder_per_configuration_of_a_sweep(tmp_path):
    Event = _event_class()
    board = monitor.TensorBoard(tmp_path, eval_every=10, labels=["lr=0.1", "lr=0.2"])
    board(20, {"train_loss": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert sorted(p.parent.name for p in board.files) == ["lr=0.1", "lr=0.2"]
    second = _read(tmp_path / "lr=0.2" / board.files[1].name, Event)
    assert [(e.step, e.summary.value[0].simple_value) for e in second[1:]] == [(10, 3.0), (20, 4.0)]
    with pytest.raises(ValueError, match="labels has 2 names for a sweep of 3 runs"):
        board(30, {"train_loss": np.ones((3, 1))})
