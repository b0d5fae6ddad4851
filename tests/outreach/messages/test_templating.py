from __future__ import annotations

import markupsafe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import UndefinedError

from outreach.messages.encoding import analyze
from outreach.messages.templating import (
    EMAIL_MAX_SOURCE,
    MAX_REFERENCES,
    OPT_OUT_LINE,
    SMS_MAX_BODY,
    SMS_MAX_RENDERED,
    SMS_MAX_SOURCE,
    CompiledTemplate,
    MergeContext,
    RenderError,
    TemplateError,
    compile_template,
    ensure_opt_out_line,
    has_opt_out_instructions,
    preview_sms,
    render_email_html,
    sample_context,
)
from outreach.messages.templating.compiled import _environment, _tidy_sms

RALLY = 'Hi {{ first_name | default("friend") }}, rally at {{ field.location }} Saturday!'


def member(
    *,
    first_name: str | None = "Maria",
    last_name: str | None = "Hernandez",
    zip: str | None = "60614",
    huddle_name: str = "Lincoln Park Neighbors",
    fields: dict[str, str] | None = None,
    unsubscribe_url: str | None = None,
) -> MergeContext:
    return MergeContext(
        first_name=first_name,
        last_name=last_name,
        zip=zip,
        huddle_name=huddle_name,
        fields={"location": "the fieldhouse"} if fields is None else fields,
        unsubscribe_url=unsubscribe_url,
    )


def sms(source: str) -> CompiledTemplate:
    return compile_template(source, channel="sms")


def compile_error(source: str, channel: str = "sms") -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template(source, channel=channel)  # type: ignore[arg-type]
    return info.value


# --- merge fields and defaults --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        (RALLY, member(), "Hi Maria, rally at the fieldhouse Saturday!"),
        (RALLY, member(first_name=None), "Hi friend, rally at the fieldhouse Saturday!"),
        (RALLY, member(first_name=""), "Hi friend, rally at the fieldhouse Saturday!"),
        (RALLY, member(first_name="   "), "Hi friend, rally at the fieldhouse Saturday!"),
        ("{{ first_name }} {{ last_name }} {{ zip }}", member(), "Maria Hernandez 60614"),
        ("{{ huddle_name }}: see you", member(), "Lincoln Park Neighbors: see you"),
        ("Hi {{ first_name }}!", member(first_name=None), "Hi !"),
        ("at {{ field.location }}.", member(fields={}), "at ."),
        ('at {{ field["location"] }}', member(), "at the fieldhouse"),
        ('at {{ field.place | default("the park") }}', member(), "at the park"),
        ("{{ field.shift | default(field.location) }}", member(), "the fieldhouse"),
        (
            '{% if field.language == "es" %}Hola{% elif first_name %}Hi{% else %}Hey{% endif %}',
            member(fields={"language": "es"}),
            "Hola",
        ),
        ('{% if field.language == "es" %}Hola{% else %}Hi{% endif %}', member(), "Hi"),
        ("{% if first_name %}Hi {{ first_name }}{% endif %}!", member(first_name=None), "!"),
        (
            '{% if "vol" in field.tags and not zip %}V{% endif %}',
            member(zip=None, fields={"tags": "volunteer"}),
            "V",
        ),
        ('{% if field.language != "es" or false %}EN{% endif %}', member(), "EN"),
        ('{{ "Hola" if field.language == "es" else "Hi" }}', member(), "Hi"),
        ('{{ first_name ~ " " ~ last_name }}', member(), "Maria Hernandez"),
        ("{% raw %}{{ first_name }}{% endraw %}", member(), "{{ first_name }}"),
        ("Hi{# an organizer's note #}!", member(), "Hi!"),
    ],
)
def test_renders_merge_fields(source: str, context: MergeContext, expected: str) -> None:
    assert sms(source).render(context) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ first_name | upper }}", "MARIA"),
        ("{{ first_name | lower }}", "maria"),
        ("{{ field.name | title }}", "Ana María De La Cruz"),
        ("{{ field.name | capitalize }}", "Ana maría de la cruz"),
        ("[{{ field.padded | trim }}]", "[x y]"),
        ("{{ field.name | truncate(10) }}", "ana..."),
        ("{{ field.name | truncate(10, true) }}", "ana mar..."),
        ('{{ field.name | truncate(10, end="") }}', "ana maría"),
        ('{{ field.name | replace("de la", "DE LA") }}', "ana maría DE LA cruz"),
        ('{{ field.name | replace("a", "4", 2) }}', "4n4 maría de la cruz"),
        ('{{ first_name | default("x", true) | upper }}', "MARIA"),
    ],
)
def test_allowed_filters(source: str, expected: str) -> None:
    context = member(fields={"name": "ana maría de la cruz", "padded": "  x y \t"})
    assert sms(source).render(context) == expected


def test_truncate_means_at_most_n_characters() -> None:
    """Jinja's default leeway (5) would leave a 12-character name untouched by truncate(10)."""
    rendered = sms("{{ first_name | truncate(10) }}").render(member(first_name="Bartholomew!"))
    assert rendered == "Barthol..."
    assert len(rendered) <= 10


def test_compiled_template_reports_what_it_uses() -> None:
    compiled = sms(RALLY + ' {% if field.language == "es" %}{{ zip }}{% endif %}')
    assert compiled.source.startswith("Hi {{")
    assert compiled.channel == "sms"
    assert compiled.names_used == {"first_name", "field", "zip"}
    assert compiled.fields_used == {"location", "language"}


def test_non_string_and_missing_field_values_render_plainly() -> None:
    compiled = sms("[{{ field.a }}|{{ field.b }}|{{ field.c }}]")
    fields: dict[str, object] = {"a": 7, "b": None}
    assert compiled.render(member(fields=fields)) == "[7||]"  # type: ignore[arg-type]


# --- compile-time errors --------------------------------------------------------------------------


def test_unknown_name_is_refused_with_the_name_and_line() -> None:
    error = compile_error("Hi {{ first_name }},\n\nsee you at {{ locaton }}!")
    assert "'locaton'" in error.message
    assert error.line == 3
    assert "field.locaton" in error.message  # the hint: custom fields are field.<name>
    assert str(error).startswith("line 3: ")


def test_misspelled_name_gets_a_suggestion() -> None:
    error = compile_error("Hi {{ frist_name }}")
    assert "'frist_name'" in error.message
    assert "did you mean 'first_name'" in error.message
    assert error.line == 1


def test_unsubscribe_url_is_email_only() -> None:
    assert "only available in email" in compile_error("{{ unsubscribe_url }}").message
    compiled = compile_template("{{ unsubscribe_url }}", channel="email")
    assert compiled.render(member(unsubscribe_url="https://x.test/u/1")) == "https://x.test/u/1"


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("Hi {{ first_name }", 1),
        ("Hi\nthere {{ first_name | }}", 2),
        ("line 1\nline 2\n{% if first_name %}no end", 3),
        ("{% endif %}", 1),
        ("{{ first name }}", 1),
    ],
)
def test_syntax_errors_carry_the_line(source: str, line: int) -> None:
    error = compile_error(source)
    assert error.line == line
    assert error.message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{% for x in range(3) %}{{ x }}{% endfor %}", "{% for %} loop is not allowed"),
        ("{{ range(10) }}", "calls are not allowed"),
        ("{{ first_name.upper() }}", "calls are not allowed"),
        ("{{ lipsum(10) }}", "calls are not allowed"),
        ("{{ first_name.__class__ }}", "only allowed on field"),
        ("{{ ''.__class__.__mro__ }}", "only allowed on field"),
        ("{{ first_name['__class__'] }}", "only allowed on field"),
        ("{{ field.__class__ }}", "not a custom field name"),
        ("{{ field['__class__'] }}", "not a custom field name"),
        ("{{ field.location.__class__ }}", "only allowed on field"),
        ("{{ field }}", "use a custom field by name"),
        ("{{ first_name[0] }}", "indexing is not allowed"),
        ("{{ first_name[:3] }}", "indexing is not allowed"),
        ("{% macro m() %}x{% endmacro %}", "{% macro %} is not allowed"),
        ('{% include "x.txt" %}', "{% include %} is not allowed"),
        ('{% import "x.txt" as x %}', "{% import %} is not allowed"),
        ('{% from "x.txt" import y %}', "{% from ... import %} is not allowed"),
        ('{% extends "base.txt" %}', "{% extends %} is not allowed"),
        ("{% set x = 1 %}", "{% set %} is not allowed"),
        ("{% set x %}a{% endset %}", "{% set %} is not allowed"),
        ("{% block b %}{% endblock %}", "{% block %} is not allowed"),
        ("{% with x = 1 %}{% endwith %}", "{% with %} is not allowed"),
        ("{% filter upper %}x{% endfilter %}", "{% filter %} block is not allowed"),
        ("{% autoescape false %}{{ first_name }}{% endautoescape %}", "{% autoescape %}"),
        ('{{ "a" * 1000000000 }}', "arithmetic is not allowed"),
        ("{{ 9 ** 9 ** 9 }}", "arithmetic is not allowed"),
        ('{{ "%s" % first_name }}', "arithmetic is not allowed"),
        ("{{ -zip }}", "arithmetic is not allowed"),
        ("{{ [first_name] }}", "lists, tuples and dicts"),
        ("{{ {'a': 1} }}", "lists, tuples and dicts"),
        ("{% if first_name is defined %}x{% endif %}", 'tests such as "is defined"'),
        ("{{ first_name if zip }}", 'needs an "else"'),
        ('{% if zip > "5" %}x{% endif %}', "only ==, !=, in and not in"),
        ("{{ first_name | safe }}", "filter 'safe' is not allowed"),
        ("{{ first_name | attr('x') }}", "filter 'attr' is not allowed"),
        ("{{ first_name | format(1) }}", "filter 'format' is not allowed"),
        ("{{ first_name | d('x') }}", "filter 'd' is not allowed"),
        ("{{ first_name | truncate(2) }}", "shorter than the ending"),
        ("{{ first_name | truncate('5') }}", "length must be a whole number"),
        ("{{ first_name | truncate(-1, end='') }}", "must not be negative"),
        ("{{ first_name | truncate(zip) }}", "length must be a literal value"),
        ("{{ first_name | truncate(5, killwords=1) }}", "killwords must be true or false"),
        ("{{ first_name | truncate(5, size=3) }}", "has no argument 'size'"),
        ("{{ first_name | truncate(5, length=3) }}", "got 'length' twice"),
        ("{{ first_name | default('a', true, 3) }}", "takes at most 2 argument(s)"),
        ("{{ first_name | default(*zip) }}", "*args and **kwargs"),
        ('{{ first_name | replace("", "x") }}', "must not be empty"),
        ("{{ first_name | replace(zip, 'x') }}", "old must be a literal value"),
        ("{{ loop }}", "unknown merge field 'loop'"),
        ("{{ self }}", "unknown merge field 'self'"),
        ("{{ range }}", "unknown merge field 'range'"),
        ("{{ config }}", "unknown merge field 'config'"),
    ],
)
def test_forbidden_constructs_are_refused_at_compile(source: str, fragment: str) -> None:
    error = compile_error(source)
    assert fragment in error.message
    assert error.line == 1


def test_forbidden_constructs_are_refused_in_email_too() -> None:
    assert "calls are not allowed" in compile_error("{{ first_name.upper() }}", "email").message
    assert (
        "{% autoescape %}"
        in compile_error(
            "{% autoescape false %}{{ first_name }}{% endautoescape %}", "email"
        ).message
    )


def test_the_line_of_a_forbidden_construct_is_reported() -> None:
    error = compile_error(
        "Hi {{ first_name }}\n{% if zip %}\n  {{ first_name.__class__ }}\n{% endif %}"
    )
    assert error.line == 3


def test_too_many_references_are_refused() -> None:
    compile_template("{{ zip }}" * MAX_REFERENCES, channel="email")
    error = compile_error("{{ zip }}" * (MAX_REFERENCES + 1), "email")
    assert f"more than {MAX_REFERENCES}" in error.message


def test_template_size_is_capped() -> None:
    sms("x" * 1_000 + " " * (SMS_MAX_SOURCE - 1_000))
    assert "limit is 5,000" in compile_error("x" * (SMS_MAX_SOURCE + 1)).message
    compile_template("x" * 1_000 + " " * (EMAIL_MAX_SOURCE - 1_000), channel="email")
    assert "limit is 100,000" in compile_error("x" * (EMAIL_MAX_SOURCE + 1), "email").message


def test_sample_render_over_the_limit_is_refused_at_draft_time() -> None:
    sms("x" * SMS_MAX_RENDERED)
    error = compile_error("x" * (SMS_MAX_RENDERED + 1))
    assert "with sample values" in error.message
    assert "1,578" in error.message


def test_unknown_channel_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="channel"):
        compile_template("hi", channel="fax")  # type: ignore[arg-type]


def test_sandbox_still_blocks_internals_if_the_checker_were_bypassed() -> None:
    """Defense in depth: the environment itself has no globals and no attribute access."""
    env = _environment("sms", html=False)
    assert env.globals == {}
    assert env.tests == {}
    assert sorted(env.filters) == sorted(
        ["default", "upper", "lower", "title", "capitalize", "trim", "truncate", "replace"]
    )
    with pytest.raises(UndefinedError):
        env.from_string("{{ name.__class__ }}").render(name="x")
    with pytest.raises(UndefinedError):
        env.from_string("{{ name['__class__'] }}").render(name="x")


# --- send-time errors (never truncated) -----------------------------------------------------------


def test_overlong_render_at_send_time_raises_render_error() -> None:
    compiled = sms("{{ field.bio }}")
    compiled.render(member(fields={"bio": "x" * SMS_MAX_RENDERED}))
    with pytest.raises(RenderError) as info:
        compiled.render(member(fields={"bio": "x" * (SMS_MAX_RENDERED + 1)}))
    assert info.value.reason == "message-too-long"


def test_overlong_merge_value_raises_render_error() -> None:
    with pytest.raises(RenderError) as info:
        sms("{{ field.bio | truncate(50) }}").render(member(fields={"bio": "x" * 100_000}))
    assert info.value.reason == "merge-value-too-long"
    with pytest.raises(RenderError) as info:
        sms("{{ first_name }}").render(member(first_name="x" * 100_000))
    assert info.value.reason == "merge-value-too-long"
    # a long value the template does not use is none of its business
    assert sms("{{ zip }}").render(member(first_name="x" * 100_000)) == "60614"


def test_replace_cannot_blow_up_the_output() -> None:
    compiled = sms('{{ field.bio | replace("a", "' + "b" * 1_000 + '") | truncate(20) }}')
    with pytest.raises(RenderError) as info:
        compiled.render(member(fields={"bio": "a" * 1_000}))
    assert info.value.reason == "message-too-long"


def test_opt_out_line_always_fits_after_the_longest_render() -> None:
    longest = sms("x" * SMS_MAX_RENDERED).render(member())
    assert len(ensure_opt_out_line(longest)) == SMS_MAX_BODY


# --- SMS tidying ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tidy"),
    [
        ("Hi  \n\n\n\nBye \t ", "Hi\n\nBye"),
        ("\n\n  Hi", "Hi"),
        ("a\r\nb\r\n\r\n\r\n\r\nc", "a\nb\n\nc"),
        ("a \n \n \n \nb", "a\n\nb"),
        ("a\n\nb", "a\n\nb"),
        ("  one line  ", "one line"),
    ],
)
def test_tidy_sms(raw: str, tidy: str) -> None:
    assert _tidy_sms(raw) == tidy


def test_if_blocks_on_their_own_lines_leave_no_gaps() -> None:
    source = (
        "Hi {{ first_name }}!\n"
        '{% if field.language == "es" %}\n'
        "Hablamos español.\n"
        "{% endif %}\n"
        "Rally Saturday.\n"
    )
    assert sms(source).render(member()) == "Hi Maria!\nRally Saturday."
    assert sms(source).render(member(fields={"language": "es"})) == (
        "Hi Maria!\nHablamos español.\nRally Saturday."
    )


# --- email ----------------------------------------------------------------------------------------


def test_email_html_escapes_member_data() -> None:
    compiled = compile_template(
        "<p>Hi {{ first_name }} from {{ field.city }}!</p>"
        '<a href="{{ unsubscribe_url }}">unsub</a>',
        channel="email",
    )
    context = member(
        first_name="<script>alert(1)</script>",
        fields={"city": 'Tom & Jerry"s <b>'},
        unsubscribe_url="https://x.test/u?a=1&b=2",
    )
    html = render_email_html(compiled, context)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Tom &amp; Jerry&#34;s &lt;b&gt;" in html
    assert 'href="https://x.test/u?a=1&amp;b=2"' in html
    assert html.startswith("<p>Hi ")  # the organizer's own markup is kept
    # the plain-text rendering (subject, text/plain part) is not escaped
    assert compiled.render(context).startswith("<p>Hi <script>alert(1)</script>")


def test_email_html_escapes_defaults_and_joins() -> None:
    compiled = compile_template(
        '{{ first_name | default("<i>friend</i>") }} {{ first_name ~ "&" }}', channel="email"
    )
    assert render_email_html(compiled, member(first_name="<b>")) == "&lt;b&gt; &lt;b&gt;&amp;"
    assert render_email_html(compiled, member(first_name=None)) == "&lt;i&gt;friend&lt;/i&gt; &amp;"


def test_render_email_html_needs_an_email_template() -> None:
    with pytest.raises(ValueError, match="email template"):
        render_email_html(sms("hi"), member())


def test_email_output_is_not_sms_tidied() -> None:
    compiled = compile_template("<pre>a  \n\n\n\nb</pre>", channel="email")
    assert render_email_html(compiled, member()) == "<pre>a  \n\n\n\nb</pre>"


# --- opt-out line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Rally Saturday!", f"Rally Saturday!\n{OPT_OUT_LINE}"),
        ("Rally Saturday!  \n", f"Rally Saturday!\n{OPT_OUT_LINE}"),
        ("", OPT_OUT_LINE),
        ("Rally Saturday! Reply STOP to opt out", "Rally Saturday! Reply STOP to opt out"),
        ("Rally! reply stop to end", "Rally! reply stop to end"),
        ("Rally! Reply\nSTOP to quit", "Rally! Reply\nSTOP to quit"),
        ("Rally! Text STOP to leave", "Rally! Text STOP to leave"),
        ("Rally! STOP to opt-out", "Rally! STOP to opt-out"),
        ("Rally! Stop to end", "Rally! Stop to end"),
        ("Rally! STOP to unsubscribe", "Rally! STOP to unsubscribe"),
        ("Rally! STOP TO OPT OUT", "Rally! STOP TO OPT OUT"),
        # not instructions: the word alone, or inside other words
        ("Don't stop now!", f"Don't stop now!\n{OPT_OUT_LINE}"),
        ("Reply STOPALL", f"Reply STOPALL\n{OPT_OUT_LINE}"),
        ("The context stop sign", f"The context stop sign\n{OPT_OUT_LINE}"),
        ("Bus stop to the rally", f"Bus stop to the rally\n{OPT_OUT_LINE}"),
    ],
)
def test_ensure_opt_out_line(body: str, expected: str) -> None:
    assert ensure_opt_out_line(body) == expected
    assert has_opt_out_instructions(ensure_opt_out_line(body))


# --- preview --------------------------------------------------------------------------------------


def test_preview_warns_about_a_curly_quote() -> None:
    text = (
        "Don’t miss Saturday's rally at the fieldhouse, {{ first_name }}! Bring a friend, a sign."
    )
    preview = preview_sms(sms(text), member(), with_opt_out_line=False)
    assert preview.info.encoding == "UCS-2"
    assert preview.info.segments == 2
    assert preview.warnings == [
        "contains ’ (curly quote): switches to UCS-2, 2 segments instead of 1; replace with '"
    ]


def test_preview_warns_about_an_emoji() -> None:
    preview = preview_sms(sms("Rally Saturday! \U0001f4e3"), member(), with_opt_out_line=False)
    assert preview.warnings == [
        "contains \U0001f4e3 (emoji): switches to UCS-2, still 1 segment at this length; "
        "remove it to stay in GSM-7"
    ]


def test_preview_warns_about_invisible_characters_and_accents_by_code_point() -> None:
    preview = preview_sms(
        sms("Hi\u200b {{ first_name }}"), member(first_name="François"), with_opt_out_line=False
    )
    assert preview.warnings[0].startswith("contains U+200B (invisible character)")
    assert preview.warnings[0].endswith("remove it")
    assert preview.warnings[1].startswith("contains ç (accented letter)")
    assert preview.warnings[1].endswith("replace with c")


def test_preview_warns_when_long_and_gsm_text_has_no_encoding_warning() -> None:
    preview = preview_sms(sms("x" * 321), member(), with_opt_out_line=False)
    assert preview.info.encoding == "GSM-7"
    assert preview.warnings == [
        "longer than 320 characters (321, 3 segments): long texts cost more and may arrive split"
    ]
    assert preview_sms(sms("x" * 320), member(), with_opt_out_line=False).warnings == []


def test_preview_with_opt_out_line() -> None:
    compiled = sms(RALLY)
    with_line = preview_sms(compiled, member(), with_opt_out_line=True)
    assert with_line.text == f"Hi Maria, rally at the fieldhouse Saturday!\n{OPT_OUT_LINE}"
    assert with_line.info == analyze(with_line.text)
    without = preview_sms(compiled, member(), with_opt_out_line=False)
    assert without.text == "Hi Maria, rally at the fieldhouse Saturday!"
    already = preview_sms(sms("Rally! Reply STOP to end"), member(), with_opt_out_line=True)
    assert already.text == "Rally! Reply STOP to end"


def test_preview_warns_about_empty_fields() -> None:
    preview = preview_sms(sms(RALLY), member(fields={}), with_opt_out_line=False)
    assert preview.warnings == [
        "field.location is empty for this recipient: it renders as nothing unless the template "
        'gives a default ({{ field.location | default("...") }})'
    ]


def test_preview_needs_an_sms_template() -> None:
    with pytest.raises(ValueError, match="SMS"):
        preview_sms(compile_template("hi", channel="email"), member(), with_opt_out_line=False)


def test_sample_context_is_realistic_and_gsm() -> None:
    context = sample_context("Eastside Huddle")
    assert context.huddle_name == "Eastside Huddle"
    assert context.first_name
    assert context.fields["location"]
    assert (context.unsubscribe_url or "").startswith("https://")
    preview = preview_sms(
        sms(RALLY + " {{ last_name }} {{ zip }}"), context, with_opt_out_line=True
    )
    assert preview.info.encoding == "GSM-7"
    assert preview.warnings == []


# --- properties -----------------------------------------------------------------------------------

# any code point, lone surrogates included, plus a good share of template syntax
any_text = st.lists(
    st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from(["{{", "}}", "{%", "%}", "{#", "#}", "{{ first_name }}", "{% for %}"]),
    ),
    max_size=100,
).map("".join)
HTML_TEMPLATE = compile_template(
    "<p>{{ first_name }}|{{ last_name }}|{{ field.x }}|{{ huddle_name }}</p>", channel="email"
)
SMS_TEMPLATE = sms("A{{ first_name }}|{{ last_name }}|{{ field.x }}|{{ huddle_name }}Z")


@settings(max_examples=300)
@given(first=any_text, last=any_text, value=any_text, huddle=any_text)
def test_member_data_is_never_evaluated(first: str, last: str, value: str, huddle: str) -> None:
    context = member(first_name=first, last_name=last, huddle_name=huddle, fields={"x": value})
    expected = f"A{first}|{last}|{value}|{huddle}Z"
    assert SMS_TEMPLATE.render(context) == _tidy_sms(expected)
    escaped = [markupsafe.escape(s) for s in (first, last, value, huddle)]
    assert render_email_html(HTML_TEMPLATE, context) == "<p>" + "|".join(escaped) + "</p>"


@settings(max_examples=300)
@given(name=any_text)
def test_rally_template_never_raises_on_any_name(name: str) -> None:
    rendered = sms(RALLY).render(member(first_name=name))
    shown = name if name.strip() else "friend"
    assert rendered == _tidy_sms(f"Hi {shown}, rally at the fieldhouse Saturday!")
    preview_sms(sms(RALLY), member(first_name=name), with_opt_out_line=True)


template_pieces = st.sampled_from(
    [
        "Hi ", "{{ ", " }}", "{% ", " %}", "if ", "endif", "else", "for ", "in ", "set ",
        "first_name", "field", ".", "location", "__class__", "|", " default(", ")", "'x'",
        "upper", "truncate(", "5", ",", "~", "==", "[", "]", "(", "*", "range", "\n", "{#", "#}",
    ]
)  # fmt: skip


@settings(max_examples=500)
@given(pieces=st.lists(template_pieces, max_size=30))
def test_any_source_compiles_or_raises_template_error(pieces: list[str]) -> None:
    """Whatever an organizer types, the draft check answers with a TemplateError or a template."""
    outcome = try_compile("".join(pieces))
    if isinstance(outcome, TemplateError):
        assert outcome.message
    else:
        outcome.render(member())
        outcome.render(member(first_name=None, fields={}))


def try_compile(source: str) -> CompiledTemplate | TemplateError:
    try:
        return sms(source)
    except TemplateError as error:
        return error
