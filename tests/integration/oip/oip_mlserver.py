"""MLServer custom runtime serving the classifier (loaded by `mlserver start` in its own venv).

model-settings.json names `oip_mlserver.OnnxClassifierRuntime` as implementation, the ONNX file as
`parameters.uri` and the fault as `parameters.extra.fault`; this folder is on PYTHONPATH.
"""

from __future__ import annotations

import asyncio

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from oip_model import OUTPUT, BadRequest, Classifier


class OnnxClassifierRuntime(MLModel):
    """onnxruntime on the ONNX file; bad requests get MLServer's 400, faults as configured."""

    async def load(self) -> bool:
        """Open the onnxruntime session on the settings' URI."""
        params = self.settings.parameters
        fault = (params.extra or {}).get("fault") or None
        self.classifier = Classifier(params.uri, fault)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Check the request, run the model, encode the logits (their dtype sets the datatype)."""
        clf = self.classifier
        try:
            clf.check({inp.name: (inp.datatype, list(inp.shape)) for inp in payload.inputs})
            images = NumpyCodec.decode_input(payload.inputs[0])
        except (BadRequest, ValueError, TypeError) as exc:
            # A data length that does not match the shape fails in decode_input (ValueError).
            raise MLServerError(f"bad request for {self.name}: {exc}", status_code=400) from exc
        logits = clf.infer(images)
        if clf.delay_s:
            await asyncio.sleep(clf.delay_s)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name=OUTPUT, payload=logits)],
        )
