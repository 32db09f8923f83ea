"""Python client for rwkv-serve's gRPC API (rwkv.v1.Rwkv).

`Client` wraps the generated stubs (`rwkv_serve.v1.rwkv_pb2`, `rwkv_pb2_grpc`) with typed calls:
generate / stream (text, token ids or chat messages; stateless or on a session), sessions
(create, get, list, fork, delete, export, import), tokenize / detokenize and model_info. Every
failed call raises RwkvError carrying the gRPC status code and the server's message.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

import grpc

from rwkv_serve.v1 import rwkv_pb2 as pb
from rwkv_serve.v1 import rwkv_pb2_grpc as pb_grpc

__all__ = ["Client", "RwkvError", "Completion", "Usage", "pb"]

Prompt = Union[str, Sequence[int], None]
Messages = Optional[Sequence[Union[Tuple[str, str], dict]]]


class RwkvError(Exception):
    """A call the server refused or that failed: `code` is a grpc.StatusCode."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass
class Usage:
    prompt_tokens: int
    generated_tokens: int
    cached_prompt_tokens: int
    queue_seconds: float
    first_token_seconds: float
    total_seconds: float


@dataclasses.dataclass
class Completion:
    text: str
    token_ids: list
    finish_reason: str  # "stop" or "length".
    matched_stop: str
    usage: Usage
    session_tokens: int  # The session's token count after the turn (0 when stateless).


def _raise(e: grpc.RpcError) -> None:
    raise RwkvError(e.code(), e.details() or "") from None


class Client:
    """One channel to a server. Thread-safe, like the gRPC channel under it."""

    def __init__(self, target: str = "localhost:50051", *, api_key: Optional[str] = None,
                 tls_ca: Optional[bytes] = None, timeout: Optional[float] = None):
        """`tls_ca`: PEM bytes of the CA to trust (TLS); `timeout`: seconds per call (None = none)."""
        if tls_ca is not None:
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=tls_ca))
        else:
            self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.RwkvStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            _raise(e)

    # Generation.

    @staticmethod
    def request(prompt: Prompt = None, *, messages: Messages = None, session_id: str = "", max_tokens: Optional[int] = None,
                temperature: Optional[float] = None, top_p: Optional[float] = None, top_k: Optional[int] = None,
                min_p: Optional[float] = None, presence_penalty: Optional[float] = None,
                frequency_penalty: Optional[float] = None, penalty_decay: Optional[float] = None,
                seed: Optional[int] = None, stop: Iterable[str] = (), stop_token_ids: Iterable[int] = (),
                ignore_eos: bool = False, logprobs: bool = False, top_logprobs: int = 0,
                initial_state: str = "", request_id: str = "", images: Sequence[bytes] = ()) -> pb.GenerateRequest:
        """A GenerateRequest: `prompt` text or token ids, or chat `messages` as (role, content)
        pairs or {"role", "content"[, "images"]} dicts. `images` (PNG, JPEG or WebP bytes) fill the
        "<image>" markers of a text prompt in order (a VisualRWKV model); a message's "images" go
        before its text. Unset sampling fields take the server's defaults."""
        r = pb.GenerateRequest(session_id=session_id, initial_state=initial_state, request_id=request_id)
        if messages is not None:
            for m in messages:
                role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
                msg = r.messages.messages.add(role=role, content=content)
                for data in (m.get("images", ()) if isinstance(m, dict) else ()):
                    msg.images.add(data=data)
        elif isinstance(prompt, str):
            r.text = prompt
            for data in images:
                r.images.add(data=data)
        elif prompt is not None:
            r.token_ids.ids.extend(prompt)
        s = r.sampling
        for name, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k), ("min_p", min_p),
                            ("presence_penalty", presence_penalty), ("frequency_penalty", frequency_penalty),
                            ("penalty_decay", penalty_decay), ("seed", seed)):
            if value is not None:
                setattr(s, name, value)
        if max_tokens is not None:
            r.stop.max_tokens = max_tokens
        r.stop.stop_strings.extend(stop)
        r.stop.stop_token_ids.extend(stop_token_ids)
        r.stop.ignore_eos = ignore_eos
        r.output.token_ids = True
        r.output.logprobs = logprobs
        r.output.top_logprobs = top_logprobs
        return r

    def stream_responses(self, request: pb.GenerateRequest) -> Iterator[pb.GenerateResponse]:
        """The raw stream: Chunk messages, then one Final."""
        try:
            yield from self._stub.Generate(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            _raise(e)

    def stream(self, prompt: Prompt = None, **kwargs) -> Iterator[str]:
        """The text as it is generated (whole UTF-8 characters). Arguments as request()."""
        for resp in self.stream_responses(self.request(prompt, **kwargs)):
            if resp.HasField("chunk") and resp.chunk.text:
                yield resp.chunk.text

    def generate(self, prompt: Prompt = None, **kwargs) -> Completion:
        """The whole completion. Arguments as request()."""
        text, ids, final = [], [], None
        for resp in self.stream_responses(self.request(prompt, **kwargs)):
            if resp.HasField("chunk"):
                text.append(resp.chunk.text)
                ids.extend(resp.chunk.token_ids)
            else:
                final = resp.final
        u = final.usage
        return Completion(text="".join(text), token_ids=ids,
                          finish_reason={pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length"}.get(
                              final.finish_reason, "unspecified"),
                          matched_stop=final.matched_stop,
                          usage=Usage(u.prompt_tokens, u.generated_tokens, u.cached_prompt_tokens, u.queue_seconds,
                                      u.first_token_seconds, u.total_seconds),
                          session_tokens=final.session_tokens)

    # Sessions.

    def create_session(self, session_id: str = "", prompt: Prompt = None, initial_state: str = "",
                       images: Sequence[bytes] = ()) -> pb.Session:
        r = pb.CreateSessionRequest(session_id=session_id, initial_state=initial_state)
        if isinstance(prompt, str):
            r.text = prompt
            for data in images:
                r.images.add(data=data)
        elif prompt is not None:
            r.token_ids.ids.extend(prompt)
        return self._call(self._stub.CreateSession, r)

    def get_session(self, session_id: str) -> pb.Session:
        return self._call(self._stub.GetSession, pb.GetSessionRequest(session_id=session_id))

    def list_sessions(self) -> list:
        return list(self._call(self._stub.ListSessions, pb.ListSessionsRequest()).sessions)

    def delete_session(self, session_id: str) -> None:
        self._call(self._stub.DeleteSession, pb.DeleteSessionRequest(session_id=session_id))

    def fork_session(self, session_id: str, new_session_id: str = "") -> pb.Session:
        return self._call(self._stub.ForkSession,
                          pb.ForkSessionRequest(session_id=session_id, new_session_id=new_session_id))

    def export_session(self, session_id: str) -> bytes:
        """The session's state file (the same format as the disk tier's)."""
        try:
            return b"".join(c.data for c in self._stub.ExportSession(
                pb.ExportSessionRequest(session_id=session_id), metadata=self._metadata, timeout=self._timeout))
        except grpc.RpcError as e:
            _raise(e)

    def import_session(self, data: bytes, session_id: str = "", chunk: int = 1 << 20) -> pb.Session:
        def requests():
            for i in range(0, max(len(data), 1), chunk):
                yield pb.ImportSessionRequest(session_id=session_id if i == 0 else "", data=data[i:i + chunk])
        return self._call(self._stub.ImportSession, requests())

    # Tokens and the model.

    def tokenize(self, text: str) -> list:
        return list(self._call(self._stub.Tokenize, pb.TokenizeRequest(text=text)).token_ids)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._call(self._stub.Detokenize, pb.DetokenizeRequest(token_ids=list(token_ids))).text

    def model_info(self) -> pb.ModelInfo:
        return self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest())
