"""The usual way, as a baseline server: same proto, every frame decoded, `generate()` per question, no batching.

`python -m bench.naive_server --port 0 --model blip-base-random` prints the same "petstream serving on" line as
`petstream serve`, so the load generator drives both alike. What it does, as most teams would first build it:
PyAV decodes every frame of every camera; a frame is picked every 1/sample_fps seconds of video; its picture goes
through `BlipProcessor` and `BlipForQuestionAnswering.generate()` once per question (fp32, eager, all cores; one
call at a time behind one lock, since concurrent calls on the same cores only slow each other); the answer text
"yes" counts as p_yes 1. No batching, no gating, no backpressure policy: a slow model means a growing queue.
`max_new_tokens=2` is the baseline's only kindness: a trained model answers "yes"/"no" and stops, while the random
benchmark weights would otherwise run to the maximum length.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import grpc

from ingest import wire
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from streaming.events import BehaviorTracker, EventRule
from streaming.frames import FrameScore, FrameTimings

log = logging.getLogger(__name__)


class NaiveModel:
    """`generate()` per (frame, question), the stock processor and model."""

    def __init__(self, model: str, max_new_tokens: int = 2) -> None:
        import torch

        from inference.models import load_model

        self._torch = torch
        self.model, self.processor = load_model(model)
        self.model.eval()
        self.name = model
        self.max_new_tokens = max_new_tokens

    def answer(self, image: Any, questions: tuple[str, ...]) -> list[float]:
        out = []
        with self._torch.no_grad():
            for q in questions:
                inputs = self.processor(images=image, text=q, return_tensors="pt")
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
                text = self.processor.decode(ids[0], skip_special_tokens=True).strip().lower()
                out.append(1.0 if text.startswith("yes") else 0.0)
        return out


class NaiveService(pb_grpc.BehaviorStreamServicer):
    def __init__(self, model: NaiveModel, sample_fps: float) -> None:
        self.model = model
        self.sample_fps = sample_fps
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="naive-model")  # the one lock
        self._decode_pool = ThreadPoolExecutor(2, thread_name_prefix="naive-decode")

    async def Stream(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.CameraMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ServerMessage]:
        messages = aiter(request_iterator)
        first = await anext(messages)
        try:
            spec = wire.parse_open(first, default_fps=self.sample_fps, max_fps=30.0)
        except wire.InvalidMessage as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        session_id = uuid.uuid4().hex[:12]
        yield wire.accepted(session_id, spec, spec.questions, self.model.name)
        out: asyncio.Queue[pb.ServerMessage | None] = asyncio.Queue()
        reader = asyncio.create_task(self._consume(spec, session_id, messages, out))
        try:
            while (msg := await out.get()) is not None:
                yield msg
        finally:
            reader.cancel()

    async def _consume(
        self,
        spec: wire.StreamSpec,
        session_id: str,
        messages: AsyncIterator[pb.CameraMessage],
        out: asyncio.Queue[pb.ServerMessage | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        codec = av.CodecContext.create(spec.codec if spec.codec != "mjpeg" else "mjpeg", "r")
        trackers = {q.name: BehaviorTracker(spec.device_id, q.name, EventRule()) for q in spec.questions}
        interval_us = 1e6 / spec.sample_fps
        next_us: float | None = None
        pending: list[asyncio.Future[None]] = []

        def decode(data: bytes) -> list[Any]:  # every frame, to RGB pictures
            return [f for p in codec.parse(data) for f in codec.decode(p)]  # type: ignore[attr-defined]

        async def score(image: Any, pts_us: int, seq: int, arrived_ns: int) -> None:
            texts = tuple(q.text for q in spec.questions)
            p = await loop.run_in_executor(self._model_pool, self.model.answer, image, texts)
            total_ms = (time.monotonic_ns() - arrived_ns) / 1e6
            p_yes = {q.name: v for q, v in zip(spec.questions, p, strict=True)}
            s = FrameScore(spec.device_id, seq, pts_us, p_yes, arrived_ns, FrameTimings(total_ms=total_ms))
            if spec.want_scores:
                out.put_nowait(wire.scores_message(s))
            for name, v in p_yes.items():
                event = trackers[name].update(v, pts_us, seq)
                if event is not None:
                    out.put_nowait(wire.event_message(event))

        seq = 0
        async for msg in messages:
            if msg.WhichOneof("kind") != "chunk":
                continue
            arrived = time.monotonic_ns()
            frames = await loop.run_in_executor(self._decode_pool, decode, msg.chunk.data)
            for frame in frames:
                pts = msg.chunk.pts_us
                seq += 1
                if next_us is None or pts >= next_us:
                    next_us = pts + interval_us
                    image = frame.to_image()  # PIL RGB, full size: the processor resizes it per question
                    pending.append(asyncio.ensure_future(score(image, pts, seq, arrived)))
        await asyncio.gather(*pending)
        for tracker in trackers.values():
            event = tracker.end(0, seq)
            if event is not None:
                out.put_nowait(wire.event_message(event))
        out.put_nowait(None)

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> pb.AskResponse:  # noqa: N802
        import io

        from PIL import Image

        questions = wire.parse_questions(list(request.behaviors))
        try:
            image = Image.open(io.BytesIO(request.image)).convert("RGB")
        except OSError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"image does not decode: {exc}")
        loop = asyncio.get_running_loop()
        p = await loop.run_in_executor(self._model_pool, self.model.answer, image, tuple(q.text for q in questions))
        return pb.AskResponse(p_yes={q.name: v for q, v in zip(questions, p, strict=True)}, model=self.model.name)


async def serve(model: str, host: str, port: int, sample_fps: float) -> None:
    service = NaiveService(NaiveModel(model), sample_fps)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 << 20)])
    pb_grpc.add_BehaviorStreamServicer_to_server(service, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"petstream serving on {host}:{bound} (naive baseline, model {model})", flush=True)
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default: 0)")
    p.add_argument("--model", default="blip-base-random", help="model to load (default: blip-base-random)")
    p.add_argument("--sample-fps", type=float, default=1.0, help="frames/s looked at per camera (default: 1)")
    args = p.parse_args()
    logging.basicConfig(level="INFO")
    asyncio.run(serve(args.model, args.host, args.port, args.sample_fps))


if __name__ == "__main__":
    main()
