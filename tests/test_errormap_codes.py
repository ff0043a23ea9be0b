"""Provider codes that name the cause pick the error class whatever status they arrive with."""

import pytest

from nbllm.errors import AuthError, BadRequestError, ContentFilterError, QuotaError, RateLimitError
from nbllm.providers.errormap import classify


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "exceeded_current_quota_error", QuotaError),  # Kimi: out of balance, not a rate limit
        (403, "exceeded_current_quota_error", QuotaError),
        (403, "AccountOverdueError", QuotaError),  # Volcengine Ark: account in arrears
        (400, "InputTextRiskDetection", ContentFilterError),  # Ark content safety, prompt side
        (400, "OutputTextRiskDetection", ContentFilterError),  # Ark content safety, answer side
        (400, "DataInspectionFailed", ContentFilterError),  # DashScope's native spelling
        (429, "rate_limit_exceeded", RateLimitError),
        (403, "some_other_code", AuthError),
        (400, "some_other_code", BadRequestError),
    ],
)
def test_code_decides_the_class(status: int, code: str, expected: type) -> None:
    assert classify(status, code) is expected
