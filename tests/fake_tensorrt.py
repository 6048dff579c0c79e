"""A fake ``tensorrt`` module for tests on machines without TensorRT or a GPU, and the tiny export
folders it builds from.

:func:`make_fake_tensorrt` returns a module with the part of TensorRT's documented Python API that
``s3pot build`` uses, for 10.x (``python/src/infer/pyCore.cpp``, ``pyGraph.cpp``,
``python/src/parsers/pyOnnx.cpp`` at v10.16) or 11.x (the same files at v11.1). Install it with
``monkeypatch.setitem(sys.modules, "tensorrt", fake)``. What 11.x removed (``BuilderFlag.FP16``,
``OBEY_/PREFER_PRECISION_CONSTRAINTS``, ``ILayer.precision``, ``set_output_type``,
``precision_is_set``, ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``,
``Builder.platform_has_fast_fp16``) raises ``AttributeError``, as in the real module.

The fake fails a build where TensorRT documents a failure: FP16 on a strongly typed network
(10.x), an FP32 pin on an integer output (NVIDIA/TensorRT#3177), a profile that does not cover the
network's inputs, a timing cache from another device; and where the test asks (``fake.fail_build``).
It records what the builder asked for in ``fake.record``; ``build_serialized_network`` returns
bytes that :func:`decode_plan` turns back into that record.

The runtime half (``Runtime.deserialize_cuda_engine``, ``ICudaEngine``, ``IExecutionContext``, the
same files) computes for real: the plan names the ONNX graph it was parsed from, and
``execute_async_v3`` runs that graph in ONNX Runtime on the CPU, reading each input from and
writing each output to the address bound with ``set_tensor_address``. Those addresses must be host
memory: a NumPy array's, or a "device" array of Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``),
which is host memory too; handed real GPU memory, the fake would crash the process.
``deserialize_cuda_engine`` refuses (returns None, the reason logged) a plan of another TensorRT
version or compute capability, as TensorRT does; it records every call in
``fake.record.deserialized``, every run in ``fake.record.executions``. A fake CUDA runtime can set
``fake.stream_capture`` (stream handle -> a list collecting captured work, or None) to capture
``execute_async_v3`` into a graph instead of running it. Names are the Python bindings': e.g.
``IExecutionContext.all_binding_shapes_specified`` (C++ ``allInputDimensionsSpecified``; there is
no ``all_input_dimensions_specified`` in Python), and ``all_shape_inputs_specified`` only on 10.x.
"""
from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PLAN_MAGIC = b"FAKE-TENSORRT-PLAN\n"
CACHE_MAGIC = b"FAKE-TENSORRT-TIMING-CACHE\n"

_ONNX_TO_LAYER = {
    "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "MatMul": "MATRIX_MULTIPLY",
    "Gemm": "MATRIX_MULTIPLY", "Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION",
    "Add": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Div": "ELEMENTWISE",
    "Pow": "ELEMENTWISE", "Max": "ELEMENTWISE", "Min": "ELEMENTWISE", "Sqrt": "UNARY",
    "Erf": "UNARY", "Exp": "UNARY", "Log": "UNARY", "Neg": "UNARY", "Abs": "UNARY",
    "Sin": "UNARY", "Cos": "UNARY", "Shape": "SHAPE", "Cast": "CAST", "Gather": "GATHER",
    "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Flatten": "SHUFFLE", "Unsqueeze": "SHUFFLE",
    "Squeeze": "SHUFFLE", "Concat": "CONCATENATION", "Slice": "SLICE", "Constant": "CONSTANT",
    "Identity": "IDENTITY", "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION", "Tanh": "ACTIVATION",
    "Where": "SELECT", "Resize": "RESIZE",
    # what `s3pot export --simplifier onnxslim` graphs of the tiny variant add (onnx-tensorrt
    # imports each of them; Attention of the com.microsoft domain, from onnxsim, it does not)
    "Einsum": "EINSUM", "Pad": "SLICE", "Split": "SLICE", "Expand": "SLICE",
    "ConstantOfShape": "FILL", "Equal": "ELEMENTWISE",
}
_ELEMENTWISE_OPS = {"Add": "SUM", "Mul": "PROD", "Sub": "SUB", "Div": "DIV", "Pow": "POW",
                    "Max": "MAX", "Min": "MIN", "Equal": "EQUAL"}
#: ONNX domains whose operators TensorRT's ONNX parser imports (not com.microsoft's).
_ONNX_DOMAINS = ("", "ai.onnx")
_UNARY_OPS = {"Sqrt": "SQRT", "Erf": "ERF", "Exp": "EXP", "Log": "LOG", "Neg": "NEG",
              "Abs": "ABS", "Sin": "SIN", "Cos": "COS"}
_ONNX_TO_DTYPE = {TensorProto.FLOAT: "FLOAT", TensorProto.FLOAT16: "HALF",
                  TensorProto.BFLOAT16: "BF16", TensorProto.INT32: "INT32",
                  TensorProto.INT64: "INT64", TensorProto.BOOL: "BOOL", TensorProto.INT8: "INT8",
                  TensorProto.UINT8: "UINT8"}
_FLOATS = ("FLOAT", "HALF", "BF16")
_LAYER_CLASSES = {"ELEMENTWISE": "IElementWiseLayer", "UNARY": "IUnaryLayer",
                  "NORMALIZATION": "INormalizationLayer", "SOFTMAX": "ISoftMaxLayer",
                  "REDUCE": "IReduceLayer", "SHAPE": "IShapeLayer", "CAST": "ICastLayer",
                  "MATRIX_MULTIPLY": "IMatrixMultiplyLayer", "GATHER": "IGatherLayer",
                  "CONSTANT": "IConstantLayer", "CONVOLUTION": "IConvolutionLayer"}

_BUILDER_FLAGS_10 = ("FP16", "BF16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT",
                     "DISABLE_TIMING_CACHE", "EDITABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
                     "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
                     "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE",
                     "EXCLUDE_LEAN_RUNTIME", "FP8", "ERROR_ON_TIMING_CACHE_MISS",
                     "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN", "REFIT_IDENTICAL",
                     "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS",
                     "MONITOR_MEMORY", "FP4")
_REMOVED_IN_11 = ("FP16", "BF16", "INT8", "OBEY_PRECISION_CONSTRAINTS",
                  "PREFER_PRECISION_CONSTRAINTS", "REJECT_EMPTY_ALGORITHMS", "FP8", "WEIGHTLESS",
                  "INT4", "FP4")


def decode_plan(plan) -> dict:
    """The record a fake build encoded into its plan."""
    data = bytes(plan)
    assert data.startswith(PLAN_MAGIC), "not a plan of the fake tensorrt"
    return json.loads(data[len(PLAN_MAGIC):])


def _enum(name: str, members) -> type[enum.IntEnum]:
    return enum.IntEnum(name, [(m, i) for i, m in enumerate(members)])


def make_fake_tensorrt(version: str, *, gpu_name: str = "Fake GPU",
                       compute_capability: str = "9.0") -> types.ModuleType:
    """A fake ``tensorrt`` of ``version`` ("10.16.0.1", "11.1.0.5", ...) on a fake GPU."""
    weak = int(version.split(".")[0]) < 11
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.record = types.SimpleNamespace(builds=[], parsed=[], host_code_sets=[], networks=[],
                                       configs=[], deserialized=[], contexts=[], executions=[],
                                       captured=[])
    trt.fail_build = None  # a message: the next builds fail with it
    trt.stream_capture = None  # stream handle -> list collecting captured work, or None
    device = f"{gpu_name}|{compute_capability}|{version}"
    machine = {"gpu_name": gpu_name, "compute_capability": compute_capability}

    # -- enums ---------------------------------------------------------------------------------
    severity = _enum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])
    trt.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8",
                                      "BF16", "INT64", "INT4"])
    for alias, member in (("float32", "FLOAT"), ("float16", "HALF"), ("bfloat16", "BF16"),
                          ("int8", "INT8"), ("int32", "INT32"), ("int64", "INT64"), ("bool", "BOOL")):
        setattr(trt, alias, trt.DataType[member])
    trt.LayerType = _enum("LayerType", sorted({*_ONNX_TO_LAYER.values(), "REDUCE", "POOLING",
                                               "SCALE", "SHUFFLE"}))
    trt.ElementWiseOperation = _enum("ElementWiseOperation", ["SUM", "PROD", "MAX", "MIN", "SUB",
                                                              "DIV", "POW", "FLOOR_DIV", "AND",
                                                              "OR", "XOR", "EQUAL", "GREATER",
                                                              "LESS"])
    trt.UnaryOperation = _enum("UnaryOperation", ["EXP", "LOG", "SQRT", "RECIP", "ABS", "NEG",
                                                  "SIN", "COS", "TAN", "ERF", "NOT", "SIGN"])
    trt.ProfilingVerbosity = _enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"])
    flags = [f for f in _BUILDER_FLAGS_10 if weak or f not in _REMOVED_IN_11]
    trt.BuilderFlag = _enum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag",
        ([("EXPLICIT_BATCH", 0)] if weak else []) + [("STRONGLY_TYPED", 1),
                                                     ("PREFER_AOT_PYTHON_PLUGINS", 2),
                                                     ("PREFER_JIT_PYTHON_PLUGINS", 3)])

    # -- logging -------------------------------------------------------------------------------
    class ILogger:
        Severity = severity

        def __init__(self):
            pass

        def log(self, severity, msg):
            raise NotImplementedError("ILogger.log must be overridden")

    for member in severity:
        setattr(ILogger, member.name, member)

    class Logger(ILogger):
        def __init__(self, min_severity=severity.WARNING):
            super().__init__()
            self.min_severity = min_severity
            self.messages = []

        def log(self, severity, msg):
            if severity <= self.min_severity:
                self.messages.append((severity, msg))

    trt.ILogger, trt.Logger = ILogger, Logger

    # -- tensors and layers --------------------------------------------------------------------
    class ITensor:
        def __init__(self, name, dtype, shape, is_shape_tensor=False):
            self.name, self._dtype, self.shape = name, dtype, tuple(shape)
            self.is_shape_tensor = is_shape_tensor

        @property
        def dtype(self):
            return self._dtype

    class _LayerState:
        def __init__(self, name, kind, outputs, op=None):
            self.name, self.type, self.outputs, self.op = name, kind, outputs, op
            self.precision, self.precision_set, self.output_types = trt.float32, False, {}

    class ILayer:
        __slots__ = ("_s",)

        def __init__(self, state):
            self._s = state

        name = property(lambda self: self._s.name, lambda self, v: setattr(self._s, "name", v))
        type = property(lambda self: self._s.type)
        num_outputs = property(lambda self: len(self._s.outputs))
        num_inputs = property(lambda self: 0)

        def get_output(self, index):
            return self._s.outputs[index]

        def get_output_type(self, index):
            return self._s.output_types.get(index, self._s.outputs[index].dtype)

    class _WeakTyping:  # 10.x only: gone in 11.x
        __slots__ = ()

        def _set_precision(self, dtype):
            self._s.precision, self._s.precision_set = dtype, True

        precision = property(lambda self: self._s.precision, _set_precision)
        precision_is_set = property(lambda self: self._s.precision_set)

        def reset_precision(self):
            self._s.precision_set = False

        def set_output_type(self, index, dtype):
            self._s.outputs[index]  # IndexError for a bad index
            self._s.output_types[index] = dtype

        def output_type_is_set(self, index):
            return index in self._s.output_types

        def reset_output_type(self, index):
            self._s.output_types.pop(index, None)

    ILayer = type("ILayer", (ILayer, _WeakTyping) if weak else (ILayer,), {"__slots__": ()})
    trt.ILayer = ILayer
    for class_name in sorted(set(_LAYER_CLASSES.values())):
        setattr(trt, class_name, type(class_name, (ILayer,), {"__slots__": ()}))
    trt.IElementWiseLayer.op = property(lambda self: self._s.op)
    trt.IUnaryLayer.op = property(lambda self: self._s.op)
    if weak:
        trt.INormalizationLayer.compute_precision = property(lambda self: self._s.precision)

    # -- network and parser --------------------------------------------------------------------
    class INetworkDefinition:
        def __init__(self, flags):
            self.flags, self.name = flags, "network"
            self._inputs, self._outputs, self._layers, self._io = [], [], [], []
            self.parsed_file = None

        def get_flag(self, flag):
            return bool(self.flags & (1 << int(flag)))

        @property
        def strongly_typed(self):
            return not weak or self.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)

        num_layers = property(lambda self: len(self._layers))
        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_layer(self, index):
            return ILayer(self._layers[index])  # the base class, as the real get_layer

        def get_input(self, index):
            return self._inputs[index]

        def get_output(self, index):
            return self._outputs[index]

    class ParserError:
        def __init__(self, desc, node=-1, node_name="", node_operator=""):
            self._desc, self._node, self._name, self._op = desc, node, node_name, node_operator

        def desc(self):
            return self._desc

        def node(self):
            return self._node

        def node_name(self):
            return self._name

        def node_operator(self):
            return self._op

        def __str__(self):
            return f"In node {self._node} with name: {self._name} and operator: {self._op} " \
                   f"(parseGraph): {self._desc}"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.logger, self._errors = network, logger, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index):
            return self._errors[index]

        def clear_errors(self):
            self._errors = []

        def parse_from_file(self, model):
            return self._import(onnx.load(str(model)), str(model))

        def parse(self, model, path=None):
            proto = onnx.load_model_from_string(bytes(model))
            if path is not None:
                from onnx.external_data_helper import load_external_data_for_model
                load_external_data_for_model(proto, str(Path(path).parent))
            return self._import(proto, path)

        def _import(self, model, path):
            trt.record.parsed.append(path)
            self.network.parsed_file = path
            try:
                _network_from_onnx(trt, self.network, model, ITensor, _LayerState, ParserError)
            except _ParseFailure as failure:
                self._errors.append(failure.error)
                self.logger.log(severity.ERROR, str(failure.error))
                return False
            return True

    trt.INetworkDefinition, trt.OnnxParser, trt.ITensor = INetworkDefinition, OnnxParser, ITensor

    # -- builder, config, profile, timing cache ------------------------------------------------
    class IOptimizationProfile:
        def __init__(self):
            self.shapes, self.valid = {}, True

        def set_shape(self, input, min, opt, max):
            shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
            ok = len({len(s) for s in shapes}) == 1 and all(
                a <= b <= c for a, b, c in zip(*shapes))
            self.valid = self.valid and ok
            self.shapes[input] = shapes

        def get_shape(self, input):
            return self.shapes[input]

    class ITimingCache:
        def __init__(self, device_key, entries):
            self.device, self.entries = device_key, list(entries)

        def serialize(self):
            return memoryview(CACHE_MAGIC + json.dumps(
                {"device": self.device, "entries": self.entries}).encode())

    class IBuilderConfig:
        def __init__(self):
            self._flags = {trt.BuilderFlag.TF32}  # TF32 is on by default
            self.profiles, self.timing_cache, self.loaded_cache_entries = [], None, 0
            self._verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            self.hardware_level_sets = []
            trt.record.configs.append(self)

        def set_flag(self, flag):
            self._flags.add(trt.BuilderFlag(flag))

        def clear_flag(self, flag):
            self._flags.discard(trt.BuilderFlag(flag))

        def get_flag(self, flag):
            return trt.BuilderFlag(flag) in self._flags

        @property
        def flags(self):
            return sum(1 << int(f) for f in self._flags)

        @property
        def profiling_verbosity(self):
            return self._verbosity

        @profiling_verbosity.setter
        def profiling_verbosity(self, value):
            self._verbosity = trt.ProfilingVerbosity(value)

        @property
        def hardware_compatibility_level(self):
            return self.hardware_level_sets[-1] if self.hardware_level_sets else "NONE"

        @hardware_compatibility_level.setter
        def hardware_compatibility_level(self, value):
            self.hardware_level_sets.append(str(value))

        def add_optimization_profile(self, profile):
            if not profile.valid:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        num_optimization_profiles = property(lambda self: len(self.profiles))

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(memoryview(serialized_timing_cache))
            if not data:
                return ITimingCache(device, [])
            if not data.startswith(CACHE_MAGIC):
                return None  # damaged
            stored = json.loads(data[len(CACHE_MAGIC):])
            return ITimingCache(stored["device"], stored["entries"])

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.device != device and not bool(ignore_mismatch):
                return False
            self.timing_cache, self.loaded_cache_entries = cache, len(cache.entries)
            return True

        def get_timing_cache(self):
            return self.timing_cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            network = INetworkDefinition(int(flags))
            trt.record.networks.append(network)
            return network

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            error = trt.fail_build or _build_error(trt, weak, network, config)
            record = None if error else {**_build_record(trt, network, config), "device": machine}
            trt.record.builds.append(record if record else {"error": error})
            if error:
                self.logger.log(severity.ERROR, error)
                return None
            if config.timing_cache is not None:
                config.timing_cache.entries.append(network.parsed_file)
            return PLAN_MAGIC + json.dumps(record).encode()

    if weak:
        Builder.platform_has_fast_fp16 = property(lambda self: True)

    class Runtime:
        def __init__(self, logger):
            self.logger, self._host_code = logger, False

        def deserialize_cuda_engine(self, serialized_engine):
            """The engine, or None with the reason logged (TensorRT checks only here)."""
            data = bytes(memoryview(serialized_engine))
            trt.record.deserialized.append(len(data))
            if not data.startswith(PLAN_MAGIC):
                self.logger.log(severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: "
                                "Serialization (Serialization assertion magicTagRead == kMAGIC_TAG "
                                "failed.Magic tag does not match)")
                return None
            record = decode_plan(data)
            if record["version"] != version:
                self.logger.log(severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 6: "
                                "API Usage Error (The engine plan file is not compatible with this "
                                f"version of TensorRT, expecting library version {version} got "
                                f"{record['version']}, please rebuild.)")
                return None
            built_on = record["device"]
            if built_on["compute_capability"] != compute_capability:
                self.logger.log(severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 6: "
                                "API Usage Error (The engine plan file is generated on an "
                                "incompatible device, expecting compute "
                                f"{compute_capability} got compute "
                                f"{built_on['compute_capability']}, please rebuild.)")
                return None
            if built_on["gpu_name"] != gpu_name:  # same compute capability: only a warning (#4233)
                self.logger.log(severity.WARNING, "Using an engine plan file across different "
                                "models of devices is not supported and is likely to affect "
                                "performance or even cause errors.")
            return ICudaEngine(record, self.logger)

        @property
        def engine_host_code_allowed(self):
            return self._host_code

        @engine_host_code_allowed.setter
        def engine_host_code_allowed(self, value):
            trt.record.host_code_sets.append(bool(value))
            self._host_code = bool(value)

    ICudaEngine, IExecutionContext = _runtime_classes(trt, severity, weak)
    trt.Builder, trt.Runtime = Builder, Runtime
    trt.ICudaEngine, trt.IExecutionContext = ICudaEngine, IExecutionContext
    trt.IBuilderConfig, trt.IOptimizationProfile, trt.ITimingCache = (
        IBuilderConfig, IOptimizationProfile, ITimingCache)
    return trt


class _ParseFailure(Exception):
    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def _network_from_onnx(trt, network, model, ITensor, LayerState, ParserError) -> None:
    """Fill ``network`` with one layer per ONNX node, output types from ONNX shape inference."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {t.name: t.data_type for t in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        types[info.name] = info.type.tensor_type.elem_type
    initializers = {t.name for t in graph.initializer}
    tensors = {}
    for info in graph.input:
        if info.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1
                for d in info.type.tensor_type.shape.dim]
        tensors[info.name] = ITensor(info.name, _dtype(trt, types[info.name], info.name), dims)
        network._inputs.append(tensors[info.name])
    for index, node in enumerate(graph.node):
        kind = "REDUCE" if node.op_type.startswith("Reduce") else _ONNX_TO_LAYER.get(node.op_type)
        if node.domain not in _ONNX_DOMAINS:
            kind = None
        name = node.name or f"{node.op_type}_{index}"
        if kind is None:
            raise _ParseFailure(ParserError(f"No importer registered for op: {node.op_type}",
                                            index, name, node.op_type))
        op = None
        if kind == "ELEMENTWISE":
            op = trt.ElementWiseOperation[_ELEMENTWISE_OPS[node.op_type]]
        elif kind == "UNARY":
            op = trt.UnaryOperation[_UNARY_OPS[node.op_type]]
        outputs = [ITensor(out, _dtype(trt, types.get(out, 0), out), [], kind == "SHAPE")
                   for out in node.output]
        tensors.update({t.name: t for t in outputs})
        network._layers.append(LayerState(name, trt.LayerType[kind], outputs, op))
    network._outputs = [tensors[o.name] for o in graph.output]
    network._io = [_io_entry(info, mode, tensors[info.name].dtype.name)
                   for mode, infos in (("INPUT", graph.input), ("OUTPUT", graph.output))
                   for info in infos if info.name not in initializers]


def _io_entry(info, mode: str, dtype: str) -> dict:
    """An engine IO tensor: shape with -1 for dynamic axes, and the ONNX dims (names for dynamic
    ones; None when ONNX does not know the rank) that the fake engine resolves at run time."""
    tensor = info.type.tensor_type
    dims = ([d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
             for d in tensor.shape.dim] if tensor.HasField("shape") else None)
    shape = None if dims is None else [d if isinstance(d, int) else -1 for d in dims]
    return {"name": info.name, "mode": mode, "dtype": dtype, "shape": shape, "dims": dims}


def _dtype(trt, elem_type: int, name: str):
    if elem_type not in _ONNX_TO_DTYPE:
        raise _ParseFailure(f"tensor {name!r}: unsupported ONNX data type {elem_type}")
    return trt.DataType[_ONNX_TO_DTYPE[elem_type]]


def _build_error(trt, weak: bool, network, config) -> str | None:
    """The documented reasons a build fails, as TensorRT logs them (None: it builds)."""
    if weak and network.strongly_typed and config.get_flag(trt.BuilderFlag.FP16):
        return "BuilderFlag::kFP16 is not compatible with a strongly typed network"
    for state in network._layers:
        pinned = {j: t for j, t in state.output_types.items()}
        if state.precision_set:
            pinned["precision"] = state.precision
        for j, dtype in pinned.items():
            outputs = state.outputs if j == "precision" else [state.outputs[j]]
            if dtype.name in _FLOATS and not any(o.dtype.name in _FLOATS for o in outputs):
                return (f"{state.name}: cannot set {'precision' if j == 'precision' else f'output {j} type'}"
                        f" to {dtype.name} on a layer with {outputs[0].dtype.name} output (#3177)")
    dynamic = [t.name for t in network._inputs if -1 in t.shape]
    if dynamic and not config.profiles:
        return "Network has dynamic or shape inputs, but no optimization profile has been defined."
    for profile in config.profiles:
        names = sorted(t.name for t in network._inputs)
        if sorted(profile.shapes) != names:
            return f"optimization profile: expected shapes for {names}, got {sorted(profile.shapes)}"
        for tensor in network._inputs:
            for shape in profile.shapes[tensor.name]:
                if len(shape) != len(tensor.shape) or any(
                        d != -1 and d != s for d, s in zip(tensor.shape, shape)):
                    return f"{tensor.name}: profile shape {shape} does not fit {tensor.shape}"
    return None


def _build_record(trt, network, config) -> dict:
    pins = {s.name: {"precision": s.precision.name if s.precision_set else None,
                     "outputs": {str(j): t.name for j, t in s.output_types.items()}}
            for s in network._layers if s.precision_set or s.output_types}
    return {
        "version": trt.__version__, "network_flags": network.flags, "io": network._io,
        "strongly_typed": network.strongly_typed, "parsed_file": network.parsed_file,
        "flags": sorted(f.name for f in config._flags), "pins": pins,
        "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
        "profiling_verbosity": config.profiling_verbosity.name,
        "hardware_compatibility_level_sets": config.hardware_level_sets,
        "timing_cache_entries_loaded": config.loaded_cache_entries,
        "timing_cache_attached": config.timing_cache is not None,
        "layers": {s.name: {"type": s.type.name, "dtypes": [o.dtype.name for o in s.outputs]}
                   for s in network._layers},
    }


# -- runtime: engines and execution contexts ------------------------------------------------------
_NPTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
            "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}


class Dims(tuple):
    """``trt.Dims``: a shape, iterable and indexable; -1 marks an axis not known yet."""


def host_memory(address: int, shape, dtype) -> np.ndarray:
    """The ``shape`` array of ``dtype`` at ``address`` (host memory: see the module docstring)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


def _runtime_classes(trt, severity, weak: bool):
    """``ICudaEngine`` and ``IExecutionContext`` of the fake (``python/src/infer/pyCore.cpp``)."""
    trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])

    def nptype(trt_type):
        if trt_type.name not in _NPTYPES:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return _NPTYPES[trt_type.name]

    trt.nptype = nptype

    class ICudaEngine:
        def __init__(self, record, logger):
            self.record, self.logger = record, logger
            self._io = {t["name"]: t for t in record["io"]}
            self._names = [t["name"] for t in record["io"]]
            self._session, self._shape_cache = None, {}

        name = property(lambda self: Path(self.record["parsed_file"]).stem)
        num_io_tensors = property(lambda self: len(self._names))
        num_optimization_profiles = property(lambda self: len(self.record["profiles"]))

        def __getitem__(self, index):
            return self._names[index]

        def get_tensor_name(self, index):
            return self._names[index]

        def get_tensor_mode(self, name):
            tensor = self._io.get(name)
            return trt.TensorIOMode[tensor["mode"]] if tensor else trt.TensorIOMode.NONE

        def get_tensor_dtype(self, name):
            return trt.DataType[self._io[name]["dtype"]]

        def get_tensor_shape(self, name):
            tensor = self._io.get(name)
            return Dims(tensor["shape"] or []) if tensor else Dims([-1])

        def get_tensor_profile_shape(self, name, profile_index):
            profiles = self.record["profiles"]
            if not 0 <= profile_index < len(profiles) or name not in profiles[profile_index]:
                self.logger.log(severity.ERROR, f"getProfileShape: {name!r} is not an input of "
                                f"profile {profile_index}")
                return [Dims([-1])] * 3  # TensorRT answers invalid dims rather than raising
            return [Dims(shape) for shape in profiles[profile_index][name]]

        def create_execution_context(self, strategy=None):
            context = IExecutionContext(self)
            trt.record.contexts.append(self.name)
            return context

        # -- what the fake adds: running the parsed graph ---------------------------------------
        def session(self):
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.log_severity_level = 3
                self._session = ort.InferenceSession(self.record["parsed_file"], options,
                                                     providers=["CPUExecutionProvider"])
            return self._session

        def output_shapes(self, input_shapes: dict) -> dict:
            """Each output's shape for these input shapes: from the ONNX dim names an input shares,
            else by running the graph once on zeros (cached)."""
            sizes = {}
            for name, shape in input_shapes.items():
                for dim, size in zip(self._io[name]["dims"], shape):
                    if isinstance(dim, str):
                        sizes[dim] = size
            outputs = [t for t in self.record["io"] if t["mode"] == "OUTPUT"]
            if all(t["dims"] is not None and all(isinstance(d, int) or d in sizes for d in t["dims"])
                   for t in outputs):
                return {t["name"]: tuple(sizes.get(d, d) for d in t["dims"]) for t in outputs}
            key = tuple(sorted(input_shapes.items()))
            if key not in self._shape_cache:
                feeds = {name: np.zeros(shape, nptype(self.get_tensor_dtype(name)))
                         for name, shape in input_shapes.items()}
                values = self.session().run([t["name"] for t in outputs], feeds)
                self._shape_cache[key] = {t["name"]: v.shape for t, v in zip(outputs, values)}
            return self._shape_cache[key]

    class IExecutionContext:
        def __init__(self, engine):
            self._engine, self._shapes, self._addresses = engine, {}, {}

        engine = property(lambda self: self._engine)
        active_optimization_profile = property(lambda self: 0)

        def _inputs(self):
            return [n for n in self._engine._names
                    if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]

        def _error(self, message):
            self._engine.logger.log(severity.ERROR, message)
            return False

        def set_optimization_profile_async(self, profile_index, stream_handle):
            if profile_index != 0:
                return self._error(f"setOptimizationProfileAsync: profile {profile_index} of 1")
            return True

        def set_input_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            if name not in self._inputs():
                return self._error(f"setInputShape: {name!r} is not an input tensor")
            declared = self._engine._io[name]["shape"]
            lo, _, hi = self._engine.record["profiles"][0][name]
            if len(shape) != len(declared) or any(d != -1 and d != s for d, s in zip(declared, shape)):
                return self._error(f"setInputShape: {name!r}: {shape} does not fit {declared}")
            if any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return self._error(f"setInputShape: {name!r}: {shape} is outside the optimization "
                                   f"profile [{lo}, {hi}]")
            self._shapes[name] = shape
            return True

        def _input_shape(self, name):
            declared = self._engine._io[name]["shape"]
            return self._shapes.get(name, tuple(declared) if -1 not in declared else None)

        def infer_shapes(self):
            return [n for n in self._inputs() if self._input_shape(n) is None]

        @property
        def all_binding_shapes_specified(self):
            return not self.infer_shapes()

        def get_tensor_shape(self, name):
            if name in self._inputs():
                return Dims(self._input_shape(name) or self._engine.get_tensor_shape(name))
            if name not in self._engine._io:
                return Dims([-1])
            if self.infer_shapes():
                return self._engine.get_tensor_shape(name)
            shapes = {n: self._input_shape(n) for n in self._inputs()}
            return Dims(self._engine.output_shapes(shapes)[name])

        def set_tensor_address(self, name, memory):
            if name not in self._engine._io:
                return self._error(f"setTensorAddress: {name!r} is not an input or output tensor")
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name):
            return self._addresses.get(name, 0)

        def execute_async_v3(self, stream_handle):
            missing = self.infer_shapes()
            if missing:
                return self._error(f"IExecutionContext::enqueueV3: input shapes of {missing} "
                                   "not specified (setInputShape)")
            unbound = [n for n in self._engine._names if not self._addresses.get(n)]
            if unbound:
                return self._error(f"IExecutionContext::enqueueV3: no address set for {unbound} "
                                   "(setTensorAddress)")
            shapes = {n: self._input_shape(n) for n in self._inputs()}
            addresses = dict(self._addresses)
            sink = trt.stream_capture(int(stream_handle)) if trt.stream_capture else None
            if sink is not None:  # captured into a graph: runs when the graph is launched
                sink.append(lambda: self._run(shapes, addresses, stream_handle))
                trt.record.captured.append(self._engine.name)
                return True
            self._run(shapes, addresses, stream_handle)
            return True

        def _run(self, shapes, addresses, stream_handle):
            engine = self._engine
            feeds = {n: host_memory(addresses[n], shape, nptype(engine.get_tensor_dtype(n))).copy()
                     for n, shape in shapes.items()}
            names = [n for n in engine._names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            expected = engine.output_shapes(shapes)
            for name, value in zip(names, engine.session().run(names, feeds)):
                assert value.shape == tuple(expected[name]), (name, value.shape, expected[name])
                host_memory(addresses[name], value.shape, value.dtype)[...] = value
            trt.record.executions.append({"engine": engine.name, "shapes": shapes,
                                          "stream": int(stream_handle)})

    if weak:  # removed in 11.x
        IExecutionContext.all_shape_inputs_specified = property(lambda self: True)
    return ICudaEngine, IExecutionContext


# -- tiny export folders -------------------------------------------------------------------------
#: Nodes of every test graph that the FP16 recipe keeps in FP32 (float outputs) ...
FP32_NODES = ("norm", "softmax", "mean", "square", "variance", "root")
#: ... and those it must leave alone: integer shape arithmetic and ordinary float layers.
OTHER_NODES = ("shape", "first_dim", "largest_dim", "dims_sum", "dims_float", "centre", "scale",
               "project", "gelu", "out")


def make_stage_graph(stage: str, *, mixed: bool = False, unknown_op: bool = False) -> onnx.ModelProto:
    """A small graph with the IO table's inputs and outputs of ``stage`` (it does not compute SAM).

    Inputs keep their dynamic axes. The body has a LayerNormalization, a Softmax, a hand-written
    norm (ReduceMean, Pow, Sqrt), a MatMul and an Erf, and integer shape arithmetic
    (Shape -> Gather, ReduceMax -> Cast). ``mixed``: the MatMul and Erf run in FP16 between Casts,
    as a mixed-precision (AutoCast-like) fp16 export; ``unknown_op`` adds an op TensorRT lacks.
    """
    from s3pot.core.io_table import get_stage

    io = get_stage(stage)
    first = io.inputs[0]
    width = first.shape_at("max")[-1]
    f = TensorProto.FLOAT
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.ones(width, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(width, np.float32), "beta"),
             numpy_helper.from_array(np.float32(2.0), "two"),
             numpy_helper.from_array(np.array([0], np.int64), "zero_index"),
             numpy_helper.from_array(rng.standard_normal((width, width)).astype(
                 np.float16 if mixed else np.float32), "weight")]
    x = first.name
    nodes = [
        helper.make_node("LayerNormalization", [x, "gamma", "beta"], ["n"], name="norm", axis=-1),
        helper.make_node("Softmax", ["n"], ["sm"], name="softmax", axis=-1),
        helper.make_node("ReduceMean", ["sm"], ["mu"], name="mean", axes=[-1], keepdims=1),
        helper.make_node("Sub", ["sm", "mu"], ["c"], name="centre"),
        helper.make_node("Pow", ["c", "two"], ["sq"], name="square"),
        helper.make_node("ReduceMean", ["sq"], ["var"], name="variance", axes=[-1], keepdims=1),
        helper.make_node("Sqrt", ["var"], ["sd"], name="root"),
        helper.make_node("Div", ["c", "sd"], ["z"], name="scale"),
    ]
    if mixed:
        nodes += [helper.make_node("Cast", ["z"], ["z16"], name="to_half", to=TensorProto.FLOAT16),
                  helper.make_node("MatMul", ["z16", "weight"], ["p16"], name="project"),
                  helper.make_node("Erf", ["p16"], ["g16"], name="gelu"),
                  helper.make_node("Cast", ["g16"], ["g"], name="to_float", to=f)]
    else:
        nodes += [helper.make_node("MatMul", ["z", "weight"], ["p"], name="project"),
                  helper.make_node("Erf", ["p"], ["g"], name="gelu")]
    nodes += [
        helper.make_node("Shape", [x], ["dims"], name="shape"),
        helper.make_node("Gather", ["dims", "zero_index"], ["d0"], name="first_dim", axis=0),
        helper.make_node("ReduceMax", ["dims"], ["dmax"], name="largest_dim", keepdims=1),
        helper.make_node("Add", ["d0", "dmax"], ["dsum"], name="dims_sum"),
        helper.make_node("Cast", ["dsum"], ["dsum_f"], name="dims_float", to=f),
    ]
    total = "g"
    for k, extra in enumerate(io.inputs[1:]):
        nodes.append(helper.make_node("ReduceSum", [extra.name], [f"s{k}"], name=f"sum_{extra.name}",
                                      keepdims=0))
        nodes.append(helper.make_node("Add", [total, f"s{k}"], [f"t{k}"], name=f"add_{extra.name}"))
        total = f"t{k}"
    if unknown_op:
        nodes.append(helper.make_node("S3potUnknownOp", [total], ["u"], name="mystery",
                                      domain="s3pot.test"))
        total = "u"
    nodes.append(helper.make_node("Add", [total, "dsum_f"], [io.outputs[0].name], name="out"))
    inputs = [helper.make_tensor_value_info(
        t.name, f, [d.name if not isinstance(d, int) else d for d in t.shape]) for t in io.inputs]
    outputs = [helper.make_tensor_value_info(io.outputs[0].name, f, None)]
    graph = helper.make_graph(nodes, f"{stage}_test", inputs, outputs, inits)
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("s3pot.test", 1)] if unknown_op else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def graph_file(stage: str, precision: str) -> str:
    return f"{stage}.onnx" if precision == "fp32" else f"{stage}.{precision}.onnx"


def write_graph(folder: Path, manifest: dict, stage: str, precision: str, model) -> None:
    """Write one graph and record it (file, sha256, bytes, nodes) in ``manifest``."""
    from s3pot.core.manifest import sha256_file

    path = Path(folder) / graph_file(stage, precision)
    onnx.save(model, str(path))
    manifest["graphs"].setdefault(stage, {})[precision] = {
        "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
        "nodes": len(model.graph.node), "external_data": []}


def make_export_folder(folder, *, precisions=("fp32", "fp16"), stages=None,
                       unknown_op: bool = False) -> Path:
    """An export folder as ``s3pot export`` writes it: graphs and ``manifest.json``."""
    from s3pot.core.io_table import STAGES, table_json
    from s3pot.core.manifest import write_manifest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"variant": "tiny", "normalization": "sam", "face_set": "paper",
                "weights": {"kind": "random", "seed": 0}, "opset": 17, "ir_version": 8,
                "io": table_json(), "graphs": {}, "checks": {}, "tools": {"onnx": onnx.__version__},
                "export_seconds": {}}
    for stage in stages or STAGES:
        for precision in precisions:
            model = make_stage_graph(stage, mixed=precision == "fp16", unknown_op=unknown_op)
            write_graph(folder, manifest, stage, precision, model)
    write_manifest(folder, manifest)
    return folder
