"""Triton python-backend model written by `harness.serving.materialize` as `<version>/model.py`.

It stands in for NVIDIA's ONNX Runtime backend (which exists only inside NVIDIA's container): it
runs the very same ONNX file with onnxruntime, or with the OpenVINO runtime when the canonical
config asked for the OpenVINO CPU execution accelerator. Dynamic batching hands `execute()` a list
of requests: they are concatenated into one run (grouped by non-batch shape, so variable-length
inputs stay correct) and the outputs are split back, one response per request.

Self-contained on purpose: the python stub imports it without the harness on its path.
Parameters (strings, from config.pbtxt): `harness_runtime` (onnxruntime | openvino),
`harness_model_file`, `intra_op_thread_count`, `inter_op_thread_count`, `allow_spinning`.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _params(config):
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def _to_str_objects(arr):
    # Triton hands BYTES tensors over as numpy object arrays of bytes; onnxruntime wants str.
    flat = [x.decode("utf-8") if isinstance(x, bytes) else x for x in arr.ravel()]
    return np.array(flat, dtype=object).reshape(arr.shape)


class TritonPythonModel:
    """Runs one ONNX file per model instance; batched requests share one inference call."""

    def initialize(self, args):
        """Load the ONNX file with the configured runtime and thread counts."""
        self.config = json.loads(args["model_config"])
        params = _params(self.config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, params.get("harness_model_file") or "model.onnx")
        self.batching = int(self.config.get("max_batch_size", 0)) > 0
        self.inputs = [i["name"] for i in self.config["input"]]
        self.string_inputs = {
            i["name"] for i in self.config["input"] if i["data_type"] == "TYPE_STRING"
        }
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"]))
            for o in self.config["output"]
        ]
        intra = int(params.get("intra_op_thread_count") or 0)
        inter = int(params.get("inter_op_thread_count") or 0)
        runtime = params.get("harness_runtime") or "onnxruntime"
        if runtime == "openvino":
            self._init_openvino(path, intra)
        else:
            self._init_onnxruntime(path, intra, inter, params.get("allow_spinning"))
        self.runtime = runtime

    def _init_onnxruntime(self, path, intra, inter, spinning):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if intra > 0:
            opts.intra_op_num_threads = intra
        if inter > 0:
            opts.inter_op_num_threads = inter
        if spinning is not None and spinning != "":
            # Busy-waiting worker threads steal CPU from the server and other instances.
            opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.output_names = [name for name, _ in self.outputs]
        self._run = self._run_onnxruntime

    def _run_onnxruntime(self, feeds):
        return self.session.run(self.output_names, feeds)

    def _init_openvino(self, path, intra):
        import openvino as ov

        core = ov.Core()
        # f32 keeps answers equal to onnxruntime's (CPUs with bf16 would otherwise downcast).
        props = {"INFERENCE_PRECISION_HINT": "f32"}
        if intra > 0:
            props["INFERENCE_NUM_THREADS"] = intra
        self.compiled = core.compile_model(core.read_model(path), "CPU", props)
        self.request = self.compiled.create_infer_request()
        self.ov_outputs = [self.compiled.output(name) for name, _ in self.outputs]
        self._run = self._run_openvino

    def _run_openvino(self, feeds):
        result = self.request.infer(feeds)
        return [result[port] for port in self.ov_outputs]

    def _inputs_of(self, request):
        arrays = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input '{name}'")
            arr = tensor.as_numpy()
            if name in self.string_inputs:
                arr = _to_str_objects(arr)
            arrays[name] = arr
        return arrays

    def _responses(self, outputs, sizes):
        responses, start = [], 0
        for size in sizes:
            tensors = []
            for (name, dtype), out in zip(self.outputs, outputs):
                part = out[start : start + size] if len(sizes) > 1 else out
                if dtype != np.object_ and part.dtype != dtype:
                    part = part.astype(dtype)
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(part)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def execute(self, requests):
        """One inference per group of same-shaped requests; one response per request."""
        responses = [None] * len(requests)
        groups = {}
        for i, request in enumerate(requests):
            try:
                arrays = self._inputs_of(request)
            except Exception as exc:  # one bad request must not fail the others
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            if not self.batching:
                groups[("single", i)] = [(i, arrays)]
                continue
            key = tuple((n, a.shape[1:]) for n, a in arrays.items())
            groups.setdefault(key, []).append((i, arrays))
        for members in groups.values():
            if len(members) == 1:
                feeds = members[0][1]
            else:
                feeds = {
                    name: np.concatenate([arrays[name] for _, arrays in members])
                    for name in self.inputs
                }
            sizes = [len(next(iter(a.values()))) if self.batching else 1 for _, a in members]
            try:
                outputs = self._run(feeds)
                group_responses = self._responses(outputs, sizes)
            except Exception as exc:
                error = pb_utils.TritonError(f"{self.runtime} inference failed: {exc}")
                group_responses = [pb_utils.InferenceResponse(error=error) for _ in members]
            for (i, _), response in zip(members, group_responses):
                responses[i] = response
        return responses

    def finalize(self):
        """Release the runtime."""
        self.session = None
        self.compiled = None
