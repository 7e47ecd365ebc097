"""The prompt every method and model shares: a system prompt stating the XML
format, then the user's question, rendered with the tokenizer's chat template."""

SYSTEM_PROMPT = (
    "Respond in the following format:\n"
    "<reasoning>\n...\n</reasoning>\n"
    "<answer>\n...\n</answer>"
)


def build_prompt(question: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    """Conversational prompt (TRL's conversational dataset format)."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": question},
    ]


def format_completion(reasoning: str, answer: str) -> str:
    """The target completion in the strict format the rewards check."""
    return f"<reasoning>\n{reasoning.strip()}\n</reasoning>\n<answer>\n{answer.strip()}\n</answer>"


def sft_example(question: str, solution: str, answer: str) -> dict:
    """A conversational prompt-completion row for TRL's SFTTrainer: the
    problem's prompt and its worked solution in the strict format."""
    return {"prompt": build_prompt(question),
            "completion": [{"role": "assistant", "content": format_completion(solution, answer)}]}
