"""PII redaction over transcript text: written and spoken forms, English and Chinese, and the keep-cases."""

import dataclasses
import itertools
import time

import pytest

from sidecar.kernel.redact import PiiSpan, find_pii, placeholder, redact, redact_tokens

pytestmark = pytest.mark.unit

# (text, lang, placeholder that must appear, raw text that must be gone)
POSITIVES: list[tuple[str, str, str, str]] = [
    # card: written, grouped, dashed, spoken digits, number words, pairs, Chinese numerals
    ("my card number is 4532718806192247", "en", "[card ••••2247]", "4532718806192247"),
    ("card 4532 7188 0619 2247 expiring next year", "en", "[card ••••2247]", "4532 7188"),
    ("it's 4532-7188-0619-2247, right", "en", "[card ••••2247]", "0619-2247"),
    ("sure it's 4 5 3 2 7 1 8 8 0 6 1 9 2 2 4 7", "en", "[card ••••2247]", "4 5 3 2 7 1 8 8"),
    (
        "four five three two seven one eight eight oh six one nine two two four seven",
        "en",
        "[card ••••2247]",
        "four five three two",
    ),
    (
        "forty five thirty two seventy one eighty eight oh six nineteen twenty two forty seven",
        "en",
        "[card ••••2247]",
        "forty five thirty two",
    ),
    ("the number is 4 5 3 2, 7 1 8 8, 0 6 1 9, 2 2 4 7.", "en", "[card ••••2247]", "7 1 8 8"),
    ("amex 3782 822463 10005", "en", "[card ••••0005]", "822463"),
    ("我的卡号是六二二二零二一二三四五六七八九零一二三", "zh", "[card ••••0123]", "六二二二零二一二三"),
    ("信用卡是6222 0212 3456 7890", "zh", "[card ••••7890]", "6222 0212"),
    # national id: Chinese 18-char id (with X), SSN written and spoken
    ("我的身份证号是一一零一零五一九八五零三一二四四一七", "zh", "[id ••••4417]", "一一零一零五一九八五"),
    ("身份证号码是11010519850312441X", "zh", "[id ••••441X]", "11010519850312441X"),
    ("身份证 110105 19850312 441x 没错", "zh", "[id ••••441X]", "19850312"),
    ("my ID is 3 2 0 1 0 2 1 9 9 0 0 7 1 5 0 0 1 X", "en", "[id ••••001X]", "3 2 0 1 0 2"),
    ("it's 110105198503124417", "en", "[id ••••4417]", "110105198503124417"),
    ("my SSN is 123-45-6789", "en", "[id ••••6789]", "123-45-6789"),
    (
        "social security number one two three four five six seven eight nine",
        "en",
        "[id ••••6789]",
        "one two three four",
    ),
    # phone: 10-11 digit runs, context + 7 digits, Chinese mobile, country code
    ("you can call me on 415 555 0132", "en", "[phone]", "555 0132"),
    ("it's (415) 555-0132", "en", "[phone]", "555-0132"),
    ("my number is oh seven seven double oh nine double one two three", "en", "[phone]", "seven seven"),
    ("my phone number is 5 5 5 1 2 3 4", "en", "[phone]", "5 5 5 1 2 3 4"),
    ("plus four four seven seven double oh nine double one two three four", "en", "[phone]", "seven seven"),
    ("+86 138 0013 8000", "en", "[phone]", "138 0013"),
    ("我的手机号是一三八零零一三八零零零", "zh", "[phone]", "一三八零零一三八零零零"),
    ("你打这个13912345678就行", "zh", "[phone]", "13912345678"),
    ("联系电话010-6552-9988", "zh", "[phone]", "6552-9988"),
    ("手机幺三九 幺二三四 五六七八", "zh", "[phone]", "幺二三四"),
    # account: context word within a few words before, IBAN
    ("my account number is 1 2 3 4 5 6 7 8", "en", "[account ••••5678]", "1 2 3 4 5 6 7 8"),
    ("the account, uh, it's 40 30 20 99", "en", "[account ••••2099]", "40 30 20 99"),
    ("sort code 20-00-00 and", "en", "[account ••••0000]", "20-00-00"),
    ("account 00012345 and sort code 40-47-84", "en", "[account ••••4784]", "40-47-84"),
    ("IBAN GB29 NWBK 6016 1331 9268 19", "en", "[account ••••6819]", "6016 1331"),
    ("账号是六二二二零二一二三四", "zh", "[account ••••1234]", "六二二二零二一二三四"),
    ("我的账户 88 0955 0955", "zh", "[account ••••0955]", "88 0955"),
    ("卡号是六二二八四八零九五五", "zh", "[account ••••0955]", "六二二八四八零九五五"),
    # email: written, spoken with dot/at, Chinese 艾特/点
    ("send it to a.b@c.com please", "en", "[email]", "a.b@c.com"),
    ("my email is mark dot ellis at mailbox dot com thanks", "en", "[email]", "mark dot ellis"),
    ("it's priya n 88 at webmail dot com", "en", "[email]", "priya n 88"),
    ("Sure, j underscore smith at work mail dot co dot uk.", "en", "[email]", "smith at work"),
    ("you can reach me at mark at gmail dot com", "en", "[email]", "mark at gmail"),
    ("邮箱是zhangsan艾特qq点com", "zh", "[email]", "zhangsan"),
    ("我的QQ邮箱是 123456789@qq.com", "zh", "[email]", "123456789"),
    # password / otp: the value after the trigger, whatever its length
    ("my password is hunter2 and it doesn't work", "en", "[password]", "hunter2"),
    ("my password is Sunshine", "en", "[password]", "Sunshine"),
    ("the password is capital H u n t e r 2", "en", "[password]", "H u n t e r"),
    ("My password is P A S S W O R D 1 2 3.", "en", "[password]", "W O R D 1 2 3"),
    ("my PIN is 4 4 1 2", "en", "[password]", "4 4 1 2"),
    ("passcode: seven seven three one", "en", "[password]", "seven seven three one"),
    ("密码是abc123，谢谢", "zh", "[password]", "abc123"),
    ("取款密码是六六八八一二", "zh", "[password]", "六六八八一二"),
    ("the code is 4 8 2 1 9 3", "en", "[otp]", "4 8 2 1 9 3"),
    ("verification code four eight two one", "en", "[otp]", "four eight two one"),
    ("the one-time password is 7 7 3 9 1 0", "en", "[otp]", "7 7 3 9 1 0"),
    ("OTP is G 4 8 2 1", "en", "[otp]", "G 4 8 2 1"),
    ("验证码是六六八八一二", "zh", "[otp]", "六六八八一二"),
    ("短信验证码：385921", "zh", "[otp]", "385921"),
]

NEGATIVES: list[tuple[str, str]] = [
    ("the card ending in 4 4 1 2", "en"),
    ("the last four digits are 2 2 4 7", "en"),
    ("zip code 6 0 6 1 4", "en"),
    ("my postcode is S W 1 A 1 A A", "en"),
    ("that's 189 dollars", "en"),
    ("it came to 1,200 dollar", "en"),
    ("the balance is $12,345,678.90", "en"),
    ("it costs 1,234,567,890 yuan", "en"),
    ("I paid 4532718806 dollars", "en"),
    ("my account balance is 1500000", "en"),
    ("I was born in 1988", "en"),
    ("on the second of March", "en"),
    ("nineteen eighty eight, twenty twenty four", "en"),
    ("from 1995, 2005, 2015 and on", "en"),
    ("my date of birth is 1985-03-12", "en"),
    ("it was 12/03/2024 I think", "en"),
    ("the reference is R T 5 5 0 9 1", "en"),
    ("ticket number N W 4 8 1 9", "en"),
    ("order number 1 2 3 4 5 6 7 8 9 0", "en"),
    ("my customer ID is 12345678", "en"),
    ("room 1 0 4 2 on floor 3", "en"),
    ("pi is 3.14159265358979", "en"),
    ("I called on 3 different days, 5 times", "en"),
    ("the wait was 20 minutes and 30 seconds", "en"),
    ("I need two tickets for three people on the twenty first", "en"),
    ("Oh, one more thing", "en"),
    ("my password is wrong", "en"),
    ("I forgot my password yesterday", "en"),
    ("what is your password?", "en"),
    ("the password is 8 characters long", "en"),
    ("your verification code has been sent", "en"),
    ("I'm at home now", "en"),
    ("take a look at amazon dot com", "en"),
    ("1 2 3 4 5 6 7 8 9", "en"),
    ("TK五五八二", "zh"),
    ("订单号TK五五八二", "zh"),
    ("手机尾号六六三一", "zh"),
    ("身份证后四位是零三一X", "zh"),
    ("订单号是二零二四零三一二五五八二", "zh"),
    ("银行卡号后六位是六二二二零二", "zh"),
    ("我一九八八年出生，今年三十六岁", "zh"),
    ("一共一千二百三十四块五", "zh"),
    ("余额是一二三四五六七八", "zh"),
    ("我查一下，请稍等一下", "zh"),
    ("密码错误，验证码已发送", "zh"),
    ("版本号是1.2.3.4.5.6", "zh"),
]


@pytest.mark.parametrize(("text", "lang", "marker", "raw"), POSITIVES)
def test_positive_is_redacted(text: str, lang: str, marker: str, raw: str):
    out = redact(text, lang)
    assert marker in out, out
    assert raw not in out, out


@pytest.mark.parametrize(("text", "lang"), NEGATIVES)
def test_negative_is_unchanged(text: str, lang: str):
    assert redact(text, lang) == text
    assert find_pii(text, lang) == []


@pytest.mark.parametrize("text", [t for t, *_ in POSITIVES] + [t for t, _ in NEGATIVES])
def test_idempotent(text: str):
    once = redact(text)
    assert redact(once) == once


def test_spans_carry_kind_offsets_and_digits():
    text = "card 4 5 3 2 7 1 8 8 0 6 1 9 2 2 4 7, email mark at mail dot com, phone 13800138000"
    spans = find_pii(text)
    assert [s.kind for s in spans] == ["card", "email", "phone"]
    card, email, phone = spans
    assert text[card.start : card.end] == "4 5 3 2 7 1 8 8 0 6 1 9 2 2 4 7"
    assert card.digits == "4532718806192247"
    assert text[email.start : email.end] == "mark at mail dot com"
    assert email.digits == ""
    assert phone.digits == "13800138000"
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


def test_span_is_frozen_and_placeholders():
    span = PiiSpan("national_id", 0, 18, "11010519850312441X")
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.kind = "card"  # type: ignore[misc]
    assert placeholder(span) == "[id ••••441X]"
    assert placeholder(PiiSpan("card", 0, 1, "4532718806192247")) == "[card ••••2247]"
    assert placeholder(PiiSpan("account", 0, 1, "12340955")) == "[account ••••0955]"
    for kind in ("phone", "email", "password", "otp"):
        assert placeholder(PiiSpan(kind, 0, 1, "")) == f"[{kind}]"


def test_several_kinds_in_one_sentence():
    text = "my account is 1 2 3 4 5 6 7 8 and the code is 9 9 1 2 and my mobile is 07700900123"
    assert redact(text) == "my account is [account ••••5678] and the code is [otp] and my mobile is [phone]"


def test_empty_and_plain_text():
    assert redact("") == ""
    assert find_pii("hello, how can I help you today?") == []


def test_redact_tokens_english():
    tokens = ["my", "card", "is", "4532", "7188", "0619", "2247", "thanks"]
    assert redact_tokens(tokens) == ["my", "card", "is", "[card ••••2247]", "", "", "", "thanks"]


def test_redact_tokens_english_spoken_email_and_punctuation():
    tokens = ["it's", "mark", "dot", "ellis", "at", "mailbox", "dot", "com."]
    tokens += ["And", "my", "PIN", "is", "4412"]
    out = redact_tokens(tokens)
    assert len(out) == len(tokens)
    assert out[:2] == ["it's", "[email]"]
    assert out[2:7] == ["", "", "", "", ""]
    assert out[7] == "."  # text of a token outside the span is kept
    assert out[8:12] == tokens[8:12]
    assert out[12] == "[password]"


def test_redact_tokens_chinese():
    tokens = ["我", "的", "手机", "号", "是", "一三八", "零零", "一三八", "零零零", "谢谢"]
    out = redact_tokens(tokens, "zh", sep="")
    assert out == ["我", "的", "手机", "号", "是", "[phone]", "", "", "", "谢谢"]


def test_redact_tokens_chinese_characters():
    text = "身份证号是一一零一零五一九八五零三一二四四一七好的"
    out = redact_tokens(list(text), "zh", sep="")
    assert len(out) == len(text)
    assert "".join(out) == "身份证号是[id ••••4417]好的"
    assert out[5] == "[id ••••4417]"
    assert out[6:23] == [""] * 17


def test_redact_tokens_several_spans_and_leading_spaces():
    # Whisper-style tokens carry their leading space and are joined with ""
    tokens = [
        " my",
        " PIN",
        " is",
        " 4",
        " 4",
        " 1",
        " 2",
        " and",
        " my",
        " phone",
        " is",
        " 415",
        " 555",
        " 0132",
    ]
    out = redact_tokens(tokens, sep="")
    assert out == [
        " my",
        " PIN",
        " is",
        " [password]",
        "",
        "",
        "",
        " and",
        " my",
        " phone",
        " is",
        " [phone]",
        "",
        "",
    ]


def test_redact_tokens_without_pii_returns_a_copy():
    tokens = ["hello", "there"]
    out = redact_tokens(tokens)
    assert out == tokens
    assert out is not tokens


def test_fast_enough_for_partials():
    sentences = [t for t, *_ in POSITIVES] + [t for t, _ in NEGATIVES]
    t0 = time.perf_counter()
    for _ in range(20):
        for s in sentences:
            find_pii(s)
    per_sentence = (time.perf_counter() - t0) / (20 * len(sentences))
    assert per_sentence < 2e-3  # typically ~40 µs
