"""Email campaigns: the organizer's Markdown or HTML, sanitized, in the base layout.

Work happens once per campaign: the body is converted (Markdown) or sanitized (HTML: no
scripts, no forms, no event handlers) and placed in ``templates/email/layout.html`` with the
huddle's name and postal address and an unsubscribe link; the result is compiled with the same
sandboxed merge fields as SMS (values HTML-escaped). A plain-text part is generated alongside.
Per recipient only the merge fields are filled in.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass

import markdown
import nh3
from jinja2 import Environment, select_autoescape
from markupsafe import Markup, escape

from outreach.app.resources import template_loader
from outreach.messages import templating
from outreach.models import Campaign, Huddle

UNSUBSCRIBE_TAG = "{{ unsubscribe_url }}"
HUDDLE_NAME_TAG = "{{ huddle_name }}"
# Names whose value is the same for every recipient, or travels as a SendGrid substitution:
# a template that reads nothing else can go out as one request per 1,000 recipients.
BATCHABLE_NAMES = frozenset({"huddle_name", "unsubscribe_url"})
UNSUBSCRIBE_SUBSTITUTION = "%%unsubscribe_url%%"

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3", "h4", "hr", "i",
    "img", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
    "*": {"style"},
}
_LOOKS_LIKE_HTML = re.compile(r"<\s*(p|div|h[1-6]|table|br|a|ul|ol|img|span|strong|em)\b", re.I)


@dataclass(frozen=True)
class PreparedEmail:
    subject: templating.CompiledTemplate
    html: templating.CompiledTemplate
    text: templating.CompiledTemplate

    @property
    def batchable(self) -> bool:
        used = self.subject.names_used | self.html.names_used | self.text.names_used
        return used <= BATCHABLE_NAMES


def sanitize_html(fragment: str) -> str:
    """Organizer HTML with scripts, forms, iframes and event handlers removed."""
    return nh3.clean(
        fragment,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer",
    )


def body_to_html(source: str) -> str:
    """Markdown (or HTML, if it looks like HTML) to sanitized HTML; merge tags survive both."""
    if _LOOKS_LIKE_HTML.search(source):
        converted = source
    else:
        converted = markdown.markdown(source, extensions=["sane_lists"], output_format="html")
    return sanitize_html(converted)


def html_to_text(fragment: str) -> str:
    """A readable plain-text part: paragraphs kept, links written out, tags dropped."""
    text = re.sub(
        r'<a\s[^>]*href="([^"]+)"[^>]*>(.*?)</a>', r"\2 (\1)", fragment, flags=re.I | re.S
    )
    text = re.sub(r"<\s*br\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"</\s*(p|div|h[1-6]|li|tr|blockquote)\s*>", "\n\n", text, flags=re.I)
    text = re.sub(r"<\s*li[^>]*>", "- ", text, flags=re.I)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@functools.cache
def _layout_environment() -> Environment:
    return Environment(
        loader=template_loader("email"),
        autoescape=select_autoescape(["html"]),
    )


def prepare(campaign: Campaign, huddle: Huddle) -> PreparedEmail:
    """Compile subject, HTML and text once per campaign (raises TemplateError).

    The result depends only on the body, the subject and the postal address, and is cached on
    them, so a campaign's send jobs do not convert, sanitize and compile it again each. A changed
    body, subject or address is a new key, so nothing stale is ever used; errors are not cached.
    """
    return _prepare(campaign.body, campaign.subject or "", huddle.postal_address or "")


@functools.lru_cache(maxsize=32)
def _prepare(body: str, subject: str, postal: str) -> PreparedEmail:
    content = body_to_html(body)
    # The page is compiled as a template afterwards: what the organizer did not write as a
    # merge tag (the postal address) must not be read as one, so its braces are neutralized.
    page = (
        _layout_environment()
        .get_template("layout.html")
        .render(
            subject="",
            huddle_name=Markup(HUDDLE_NAME_TAG),  # noqa: S704 - a constant merge tag
            postal_address=Markup(  # noqa: S704 - escaped just here
                str(escape(postal)).replace("{", "&#123;").replace("}", "&#125;")
            ),
            content=_protect_merge_tags(content),
            unsubscribe_placeholder=UNSUBSCRIBE_TAG,
        )
    )
    text = "\n".join(
        [
            html_to_text(content),
            "",
            "--",
            HUDDLE_NAME_TAG,
            "{% raw %}" + postal.replace("{% endraw %}", "") + "{% endraw %}\n",
            f"Unsubscribe: {UNSUBSCRIBE_TAG}",
        ]
    )
    return PreparedEmail(
        subject=templating.compile_template(subject, channel="email"),
        html=templating.compile_template(page, channel="email"),
        text=templating.compile_template(text, channel="email"),
    )


def _protect_merge_tags(fragment: str) -> str:
    """nh3 escapes quotes inside text; merge tags need theirs back (``default("friend")``)."""
    return re.sub(
        r"\{\{.*?\}\}|\{%.*?%\}",
        lambda match: html.unescape(match.group(0)),
        fragment,
        flags=re.S,
    )
