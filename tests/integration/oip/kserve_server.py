"""KServe's Python ModelServer serving the classifier on the v2 protocol (HTTP and gRPC).

Run by `KServeLauncher` with the python of .work/venvs/kserve:
    python kserve_server.py --model-file FILE --http_port P --grpc_port Q [--fault F]
(`--http_port`/`--grpc_port` are KServe's own flag names: kserve parses sys.argv on import.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput
from oip_model import INPUT_SPEC, MODEL_NAME, OUTPUT, OUTPUT_SPEC, BadRequest, Classifier


class OnnxClassifierModel(Model):
    """onnxruntime on the ONNX file; bad requests raise kserve's InvalidInput (HTTP 400)."""

    def __init__(self, name: str, classifier: Classifier) -> None:
        super().__init__(name)
        self.classifier = classifier
        self.load()

    def get_input_types(self) -> list[dict]:
        """Model metadata: the declared input."""
        return [dict(INPUT_SPEC)]

    def get_output_types(self) -> list[dict]:
        """Model metadata: the declared output (FP32, whatever `wrong_dtype` answers)."""
        return [dict(OUTPUT_SPEC)]

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        """Check the request, run the model, answer in the encoding the client asked for."""
        clf = self.classifier
        try:
            clf.check({inp.name: (inp.datatype, list(inp.shape)) for inp in payload.inputs})
            images = payload.inputs[0].as_numpy()
        except (BadRequest, ValueError, TypeError) as exc:
            raise InvalidInput(f"bad request for {self.name}: {exc}") from exc
        logits = clf.infer(images)
        if clf.delay_s:
            await asyncio.sleep(clf.delay_s)
        # The datatype follows the array (FP64 under `wrong_dtype`), as a runtime would send it.
        datatype = "FP64" if logits.dtype.itemsize == 8 else "FP32"
        output = InferOutput(name=OUTPUT, shape=list(logits.shape), datatype=datatype)
        # Raw bytes: gRPC sends them as raw_output_contents, REST re-encodes them per request
        # (binary or JSON); an ndarray in `data` breaks kserve's gRPC encoder.
        output.set_data_from_numpy(logits, binary_data=True)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    """Parse the flags, serve until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-file", required=True)
    ap.add_argument("--fault", default="")
    ap.add_argument("--http_port", type=int, required=True)
    ap.add_argument("--grpc_port", type=int, required=True)
    args, _ = ap.parse_known_args()
    logging.basicConfig(level=logging.INFO)
    model = OnnxClassifierModel(MODEL_NAME, Classifier(args.model_file, args.fault))
    ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=True,
        enable_latency_logging=False,
    ).start([model])


if __name__ == "__main__":
    main()
