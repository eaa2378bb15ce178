"""Chat with DeepSeek-R1 through Atelier's public API, printing the reasoning apart from the answer.

    python app.py --profile tiny          # in one terminal
    python examples/chat.py "Why is the sky blue?"
    python examples/chat.py --conversation-id 3 "And at sunset?"
"""

from __future__ import annotations

import argparse
import sys

from gradio_client import Client

DIM, RESET = "\033[2m", "\033[0m"


def main() -> None:
    """Stream one /chat reply: reasoning dimmed under "Thinking", then the answer."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("message")
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--conversation-id", type=int, default=None, help="continue a conversation")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--thinking-budget", type=int, default=None,
                        help="reasoning tokens before the answer is forced (0: no limit; default: the server's)")
    args = parser.parse_args()
    color = sys.stdout.isatty()

    client = Client(args.url, verbose=False)
    job = client.submit(message=args.message, conversation_id=args.conversation_id, temperature=args.temperature,
                        top_p=args.top_p, max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget,
                        api_name="/chat")
    shown_reasoning = shown_answer = 0
    result: dict = {}
    # Each update carries the whole reasoning and answer so far; print only what is new.
    for update in job:
        result = update
        reasoning, answer = update["reasoning"], update["answer"]
        if len(reasoning) > shown_reasoning:
            if shown_reasoning == 0:
                print("── Thinking ──")
            print((DIM if color else "") + reasoning[shown_reasoning:] + (RESET if color else ""), end="", flush=True)
            shown_reasoning = len(reasoning)
        if len(answer) > shown_answer:
            if shown_answer == 0:
                print("\n── Answer ──")
            print(answer[shown_answer:], end="", flush=True)
            shown_answer = len(answer)
    result = job.result() or result
    usage = result.get("usage") or {}
    print(f"\n\n[conversation {result['conversation_id']} · {result['status']} · thought "
          f"{result.get('reasoning_s') or 0:.1f} s · {usage.get('completion_tokens', '?')} tokens]")


if __name__ == "__main__":
    main()
