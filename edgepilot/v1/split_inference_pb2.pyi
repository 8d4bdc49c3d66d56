from google.protobuf import timestamp_pb2 as _timestamp_pb2
from edgepilot.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferRequest(_message.Message):
    __slots__ = ("request_id", "model", "split_point", "latent_shape", "codec", "bitstream", "deadline", "bitstream_crc32")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    LATENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    BITSTREAM_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    BITSTREAM_CRC32_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: _common_pb2.ModelRef
    split_point: int
    latent_shape: _common_pb2.TensorShape
    codec: _common_pb2.CodecRef
    bitstream: bytes
    deadline: _timestamp_pb2.Timestamp
    bitstream_crc32: int
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., split_point: _Optional[int] = ..., latent_shape: _Optional[_Union[_common_pb2.TensorShape, _Mapping]] = ..., codec: _Optional[_Union[_common_pb2.CodecRef, _Mapping]] = ..., bitstream: _Optional[bytes] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., bitstream_crc32: _Optional[int] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("request_id", "logits", "predicted_class", "timings", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    logits: _containers.RepeatedScalarFieldContainer[float]
    predicted_class: int
    timings: _common_pb2.ServerTimings
    error: _common_pb2.ErrorDetail
    def __init__(self, request_id: _Optional[str] = ..., logits: _Optional[_Iterable[float]] = ..., predicted_class: _Optional[int] = ..., timings: _Optional[_Union[_common_pb2.ServerTimings, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorDetail, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SplitEndpoint(_message.Message):
    __slots__ = ("model", "split_point", "latent_shape", "codecs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    LATENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CODECS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    split_point: int
    latent_shape: _common_pb2.TensorShape
    codecs: _containers.RepeatedCompositeFieldContainer[_common_pb2.CodecRef]
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., split_point: _Optional[int] = ..., latent_shape: _Optional[_Union[_common_pb2.TensorShape, _Mapping]] = ..., codecs: _Optional[_Iterable[_Union[_common_pb2.CodecRef, _Mapping]]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[SplitEndpoint]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[SplitEndpoint, _Mapping]]] = ...) -> None: ...
