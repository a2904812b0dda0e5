"""The chat page at `/`, driven in headless Chromium against a real `litllm serve` started with an API key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.serve_helpers import Server, running_server

REPLY_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(litllm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(litllm_dir, tmp_path_factory.mktemp("chat_page")) as server:
        yield server


def open_page(browser: Browser, server: Server) -> Page:
    """A new tab (empty sessionStorage) on the chat page."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    return page


@pytest.fixture(scope="module")
def tab(browser: Browser, server: Server) -> Iterator[Page]:
    """One tab for the module's conversations (a new one costs a renderer process), the API key given."""
    page = open_page(browser, server)
    page.fill("#api-key", server.api_key)
    page.press("#api-key", "Enter")
    expect(page.locator("#key-form")).to_be_hidden()
    yield page
    page.context.close()


@pytest.fixture
def chat(tab: Page) -> Page:
    """The chat page with an empty conversation and greedy sampling of 12 tokens."""
    tab.click("#new-chat")
    for control, value in [("#temperature", "0"), ("#max-tokens", "12"), ("#system", ""), ("#input", "")]:
        tab.fill(control, value)
    expect(tab.locator("#send")).to_be_enabled()
    return tab


def send(page: Page, text: str) -> None:
    """Type a message, press Enter and wait until the reply is whole."""
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator("#send")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)


def api_reply(server: Server, messages: list[dict[str, str]], max_tokens: int = 12) -> str:
    """What the API answers to the same conversation, greedy and whole."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
    status, answer = server.request("POST", "/v1/chat/completions", body)
    assert status == 200, answer
    return answer["choices"][0]["message"]["content"]


def texts(page: Page) -> list[tuple[str, str]]:
    """The conversation shown: (role, text) of each message."""
    return [(m.get_attribute("class").split()[1], m.text_content()) for m in page.locator("#messages .message").all()]


@contextlib.contextmanager
def slow_network(page: Page, bytes_per_second: int = 4000) -> Iterator[None]:
    """Chromium's network throttling, so that a reply takes seconds to arrive."""
    cdp = page.context.new_cdp_session(page)
    conditions = {"offline": False, "latency": 0, "uploadThroughput": -1}
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {**conditions, "downloadThroughput": bytes_per_second})
    try:
        yield
    finally:
        cdp.send("Network.emulateNetworkConditions", {**conditions, "downloadThroughput": -1})
        cdp.detach()


def test_page_asks_for_the_key_keeps_it_for_the_session_and_shows_the_model(
    browser: Browser, server: Server, litllm_dir: Path
) -> None:
    page = open_page(browser, server)
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#model")).not_to_have_text(litllm_dir.name)
    page.fill("#api-key", "wrong-key")
    page.press("#api-key", "Enter")
    expect(page.locator("#key-form")).to_contain_text("refused")
    page.fill("#api-key", server.api_key)
    page.click("#key-form button")
    expect(page.locator("#model")).to_have_text(litllm_dir.name)
    page.reload()  # the key is kept for the tab's session
    expect(page.locator("#model")).to_have_text(litllm_dir.name)
    expect(page.locator("#key-form")).to_be_hidden()
    page.context.close()


# records every text the assistant's bubble shows, in the page's global `seen`
WATCH_REPLY = """() => {
    window.seen = [];
    window.watcher = new MutationObserver(() => seen.push(document.querySelector('.message.assistant')?.textContent));
    watcher.observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true});
}"""


def test_enter_sends_and_the_reply_streams_in_as_the_api_answers(chat: Page, server: Server) -> None:
    chat.fill("#max-tokens", "40")
    chat.evaluate(WATCH_REPLY)
    with slow_network(chat, bytes_per_second=20_000):  # so that the pieces cannot arrive in one read
        send(chat, "def add(a, b):")
    expected = api_reply(server, [{"role": "user", "content": "def add(a, b):"}], max_tokens=40)
    assert texts(chat) == [("user", "def add(a, b):"), ("assistant", expected)]
    pieces = [t for t in dict.fromkeys(chat.evaluate("() => { watcher.disconnect(); return seen; }")) if t]
    assert len(pieces) > 1 and all(expected.startswith(p) for p in pieces)  # it grew piece by piece


def test_shift_enter_makes_a_new_line_instead_of_sending(chat: Page) -> None:
    chat.fill("#input", "first line")
    chat.press("#input", "Shift+Enter")
    chat.type("#input", "second line")
    assert chat.input_value("#input") == "first line\nsecond line" and texts(chat) == []


def test_each_message_sends_the_whole_conversation(chat: Page, server: Server) -> None:
    send(chat, "def add(a, b):")
    send(chat, "class Point:")
    first = api_reply(server, [{"role": "user", "content": "def add(a, b):"}])
    second = api_reply(
        server,
        [
            {"role": "user", "content": "def add(a, b):"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "class Point:"},
        ],
    )
    assert texts(chat) == [
        ("user", "def add(a, b):"),
        ("assistant", first),
        ("user", "class Point:"),
        ("assistant", second),
    ]


def test_system_prompt_goes_first(chat: Page, server: Server) -> None:
    chat.fill("#system", "Be brief.")
    send(chat, "import os")
    expected = api_reply(server, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "import os"}])
    assert texts(chat)[-1] == ("assistant", expected)


def test_messages_are_shown_as_text_not_markup(chat: Page) -> None:
    chat.fill("#max-tokens", "1")
    send(chat, "<b>bold</b> <img src=x onerror=alert(1)>")
    assert texts(chat)[0] == ("user", "<b>bold</b> <img src=x onerror=alert(1)>")
    assert chat.locator("#messages b, #messages img").count() == 0


def test_stop_ends_a_long_reply_and_the_page_takes_the_next_message(chat: Page, server: Server) -> None:
    chat.fill("#max-tokens", "4000")
    with slow_network(chat):  # the tiny model writes its whole reply in a fraction of a second
        chat.fill("#input", "def")
        chat.press("#input", "Enter")
        expect(chat.locator(".message.assistant")).not_to_have_text("", timeout=REPLY_TIMEOUT_MS)
        chat.click("#stop")
        expect(chat.locator(".message.assistant")).to_have_class("message assistant stopped")
    expect(chat.locator("#send")).to_be_enabled()
    expect(chat.locator("#stop")).to_be_disabled()
    whole = api_reply(server, [{"role": "user", "content": "def"}], max_tokens=4000)
    shown = chat.locator(".message.assistant").text_content()
    assert whole.startswith(shown) and len(shown) < len(whole)
    chat.fill("#max-tokens", "12")
    send(chat, "import os")
    assert [role for role, _ in texts(chat)] == ["user", "assistant", "user", "assistant"]
    assert chat.locator("#error").is_hidden()


def test_new_chat_clears_the_conversation(chat: Page, server: Server) -> None:
    send(chat, "def add(a, b):")
    chat.click("#new-chat")
    assert texts(chat) == []
    send(chat, "class Point:")  # answered as the first message of a conversation
    expected = api_reply(server, [{"role": "user", "content": "class Point:"}])
    assert texts(chat) == [("user", "class Point:"), ("assistant", expected)]


@pytest.mark.parametrize(
    ("control", "value", "fragment"), [("#temperature", "2.5", "temperature"), ("#max-tokens", "0", "max_tokens")]
)
def test_a_server_error_shows_and_the_message_comes_back_to_the_input(
    chat: Page, control: str, value: str, fragment: str
) -> None:
    chat.fill(control, value)
    send(chat, "def add(a, b):")
    expect(chat.locator("#error")).to_be_visible()
    expect(chat.locator("#error")).to_contain_text(fragment)
    assert texts(chat) == [] and chat.input_value("#input") == "def add(a, b):"
