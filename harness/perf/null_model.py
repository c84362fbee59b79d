"""Triton python-backend model that computes nothing: the serving path's ceiling.

`harness.perf.ceiling` loads it, in place of a served python-backend model and with that model's
config, to measure how many inferences per second the server, the python stub and the client
manage when the model itself costs nothing. It reads every input tensor (moving inputs is part of
serving) and answers zeros of each configured output's shape and type.

Self-contained on purpose: the python stub imports it without the harness on its path.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Answers every request with zero-filled outputs of the configured shapes."""

    def initialize(self, args):
        """Read the inputs, outputs and batching mode from the model config."""
        config = json.loads(args["model_config"])
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [
            (
                o["name"],
                pb_utils.triton_string_to_numpy(o["data_type"]),
                [max(1, int(d)) for d in o["dims"]],  # variable dims answer with length 1
            )
            for o in config["output"]
        ]

    def execute(self, requests):
        """One zero-filled response per request."""
        responses = []
        for request in requests:
            arrays = [pb_utils.get_input_tensor_by_name(request, n) for n in self.inputs]
            lead = [arrays[0].as_numpy().shape[0]] if self.batching else []
            tensors = [
                pb_utils.Tensor(name, np.zeros(lead + dims, dtype=dtype))
                for name, dtype, dims in self.outputs
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
