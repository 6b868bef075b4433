"""A prompt with text on both sides of the optimized span, rendered for one model (DESIGN §5, "Layout of a prompt").

The user writes the prompt once: nanoGCG's ``messages`` (a list of ``{"role", "content"}`` dicts, exactly one content
holding the placeholder ``{optim_str}`` once) or a plain string with the placeholder. Each model renders it its own
way (:func:`render`): messages through its chat template (its tokenizer's, or one given for it; the generation
prompt added), a plain string as it is. The rendered text is split at the placeholder and each side tokenized on its
own (``add_special_tokens=False``), so the fixed parts are the model's own token ids; the target is tokenized alone
too (it is what the model should generate after the prompt).

BOS: exactly one at the start, however the template is written. Where the tokenizer adds a leading token in use
(``tok("x")`` starts with it) and the rendered text does not start with it, it is added (to the ids and the text);
a doubled one (a template writing ``bos_token`` and a user message starting with it) is collapsed. A tokenizer that
adds nothing in use (SmolLM2, Qwen) gets no BOS. Tokens a tokenizer appends in use (EOS, SEP) are not added: the
model generates after the prompt.

Default system prompts are kept on purpose: SmolLM2's chat template adds "You are a helpful AI assistant named
SmolLM, trained by Hugging Face" when the messages have no system message, and that is what the model sees in use
with those messages. To optimize without it, give a system message of your own (or a template).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

PLACEHOLDER = "{optim_str}"

#: a Gemma-style chat template (the bundled Gemma-3 GGUF carries none): user/model turns, generation prompt
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

__all__ = ["PLACEHOLDER", "GEMMA_CHAT_TEMPLATE", "Rendered", "render", "lead_ids"]


@dataclass
class Rendered:
    """One prompt as one model sees it: ``before_ids + span + after_ids``, then ``target_ids``.

    Attributes:
        before_ids: token ids of the text before the span (one BOS first where the model takes one).
        after_ids: token ids of the text after the span (the rest of the turn, the generation prompt).
        target_ids: token ids of the target, tokenized alone.
        before_text, after_text: the texts of both sides; ``tokenizer(before_text + s + after_text,
            add_special_tokens=False)`` equals ``before_ids + tokenizer(s) + after_ids`` when the span ``s`` starts
            and ends on token boundaries of the whole text (what :class:`~fuse.optim.prompt_chain.PromptChain`
            checks for every candidate).
        target_text: the target.
    """

    before_ids: list[int]
    after_ids: list[int]
    target_ids: list[int]
    before_text: str
    after_text: str
    target_text: str = ""

    def text(self, span_text: str) -> str:
        """The whole prompt's text with ``span_text`` in place of the placeholder."""
        return self.before_text + span_text + self.after_text


def lead_ids(tokenizer) -> list[int]:
    """The token ids the tokenizer adds before a text in use (``[bos]`` or ``[]``)."""
    with_sp, plain = tokenizer("x")["input_ids"], tokenizer("x", add_special_tokens=False)["input_ids"]
    start = next((i for i in range(len(with_sp)) if with_sp[i : i + len(plain)] == plain), 0)
    return list(with_sp[:start])


def _text_of(tokenizer, messages, chat_template: str | None) -> str:
    if isinstance(messages, str):
        if messages.count(PLACEHOLDER) != 1:
            raise ValueError(f"the prompt must hold {PLACEHOLDER} exactly once, found it {messages.count(PLACEHOLDER)} "
                             f"times in {messages!r}")
        return messages
    if not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} dicts or a string with "
                         f"{PLACEHOLDER}, got {messages!r}")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"each message is a dict with text 'role' and 'content', got {m!r}")
    found = sum(m["content"].count(PLACEHOLDER) for m in messages)
    if found != 1:
        raise ValueError(f"the messages must hold {PLACEHOLDER} exactly once (in one content), found it {found} times")
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError(f"{type(tokenizer).__name__} {getattr(tokenizer, 'name_or_path', '')!r} has no chat template: "
                         "give one for this model (e.g. fuse.models.templates.GEMMA_CHAT_TEMPLATE) or pass the prompt "
                         f"as a plain string with {PLACEHOLDER}")
    text = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True,
                                         chat_template=template)
    if text.count(PLACEHOLDER) != 1:
        raise ValueError(f"the chat template kept {PLACEHOLDER} {text.count(PLACEHOLDER)} times (expected once): "
                         f"{text!r}")
    return text


def render(tokenizer, messages, target: str, chat_template: str | None = None) -> Rendered:
    """Render ``messages`` (or a plain string) for one model and tokenize both sides of the placeholder and the target.

    Args:
        tokenizer: the model's (fast) tokenizer.
        messages: ``[{"role": ..., "content": ...}, ...]`` with ``{optim_str}`` once, or a string with it once (used
            as it is, no chat template).
        target: what the model should generate after the prompt (non-empty).
        chat_template: a Jinja chat template for this model (default: the tokenizer's own).

    Returns:
        :class:`Rendered`, with exactly one BOS at the start where the tokenizer adds one in use (module docstring).

    Example:
        >>> r = render(tok, [{"role": "user", "content": "Tell me{optim_str}"}], "Sure")   # doctest: +SKIP
        >>> r.before_ids + tok(" a joke", add_special_tokens=False)["input_ids"] + r.after_ids  # doctest: +SKIP
    """
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"the target must be non-empty text, got {target!r}")
    text = _text_of(tokenizer, messages, chat_template)
    before, after = text.split(PLACEHOLDER)
    lead = lead_ids(tokenizer)
    if lead:
        lead_text = tokenizer.decode(lead, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        while lead_text and before.startswith(lead_text * 2):
            before = before[len(lead_text):]
        if list(tokenizer(before, add_special_tokens=False)["input_ids"][: len(lead)]) != lead:
            before = lead_text + before
    before_ids = list(tokenizer(before, add_special_tokens=False)["input_ids"]) if before else []
    after_ids = list(tokenizer(after, add_special_tokens=False)["input_ids"]) if after else []
    if lead and before_ids[: len(lead)] != lead:  # pragma: no cover - a tokenizer that does not parse its own BOS
        raise ValueError(f"the tokenizer does not read its own BOS text {lead_text!r} back as {lead}")
    target_ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if not target_ids:
        raise ValueError(f"the target {target!r} tokenizes to no tokens")
    return Rendered(before_ids, after_ids, target_ids, before, after, target)
