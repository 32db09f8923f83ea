#!/usr/bin/env python3
"""A terminal chat on a server-side session: each turn sends only the new message; the
conversation's state stays on the server.

  python examples/chat.py [--server localhost:50051] [--api-key KEY] [--max-tokens 200]

Lines from standard input are the user's messages; an empty line or end of input ends the chat
(the session is deleted).
"""
import argparse
import sys

from rwkv_serve import Client, RwkvError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="localhost:50051")
    ap.add_argument("--api-key")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=1.0)
    a = ap.parse_args()
    with Client(a.server, api_key=a.api_key) as c:
        info = c.model_info()
        print(f"[{info.description} on {info.backend}]", file=sys.stderr)
        session = c.create_session()
        try:
            for line in sys.stdin:
                line = line.strip()
                if not line:
                    break
                print("Assistant: ", end="", flush=True)
                for piece in c.stream(messages=[("user", line)], session_id=session.session_id,
                                      max_tokens=a.max_tokens, temperature=a.temperature):
                    print(piece, end="", flush=True)
                print()
        except RwkvError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        finally:
            c.delete_session(session.session_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
