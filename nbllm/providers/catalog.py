"""The built-in providers, as data: one ``ProviderSpec`` row each.

Facts come from docs/providers.md (one section per id). Model lists are suggestions for completion and for the
converter's model map, never a closed list: providers rename models often, so any name is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ProviderSpec:
    """Everything needed to talk to one provider, except the key itself."""

    id: str
    label: str
    dialect: str  # "openai", "ernie", "ollama", "opennmt", "local" or a plugin's
    base_url: str
    key_env: tuple[str, ...] = ()  # first is the documented name, the rest aliases
    key_required: bool = True
    secret_env: tuple[str, ...] = ()  # a second credential; the key is then "KEY:SECRET"
    default_model: str = ""
    models: tuple[str, ...] = ()
    headers_from_env: dict[str, str] = field(default_factory=dict)  # header -> env var
    extra_headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    base_url_env: str | None = None  # an env var the provider's own tools read (OPENAI_BASE_URL)
    model_path: str = ""  # in-process dialects ("local"): the model file, where others have a URL
    model_path_env: str | None = None  # an env var naming that file (NBLLM_LOCAL_MODEL)
    lists_models: bool = True  # serves GET /models (or its dialect's listing)
    tiers: dict[str, str] = field(default_factory=dict)  # the converter's model for each OpenAI family tier

    @property
    def openai_compatible(self) -> bool:
        return self.dialect == "openai"

    def with_changes(self, **changes: Any) -> ProviderSpec:
        return replace(self, **changes)


def _row(**kw: Any) -> ProviderSpec:
    models = kw.get("models", ())
    kw.setdefault("default_model", models[0] if models else "")
    return ProviderSpec(**kw)


BUILTIN: tuple[ProviderSpec, ...] = (
    _row(
        id="ernie",
        label="Baidu ERNIE (Qianfan v2)",
        dialect="openai",
        base_url="https://qianfan.baidubce.com/v2",
        key_env=("QIANFAN_API_KEY", "QIANFAN_BEARER_TOKEN"),
        models=(
            "ernie-4.0-turbo-8k", "ernie-4.5-turbo-128k", "ernie-4.5-turbo-32k", "ernie-x1-turbo-32k",
            "ernie-3.5-8k", "ernie-speed-128k", "ernie-lite-8k", "ernie-4.0-8k", "ernie-5.0",
            "deepseek-v3", "deepseek-r1", "embedding-v1",
        ),
        headers_from_env={"appid": "QIANFAN_APP_ID"},
        lists_models=False,
        tiers={"strong": "ernie-4.5-turbo-128k", "fast": "ernie-speed-128k",
               "reasoning": "ernie-x1-turbo-32k", "embedding": "embedding-v1"},
    ),
    _row(
        id="ernie-v1",
        label="Baidu ERNIE (legacy wenxinworkshop v1)",
        dialect="ernie",
        base_url="https://aip.baidubce.com",
        key_env=("QIANFAN_AK",),
        secret_env=("QIANFAN_SK",),
        models=(
            "ERNIE-4.0-8K", "ERNIE-3.5-8K", "ERNIE-4.0-Turbo-8K", "ERNIE-3.5-128K", "ERNIE-Speed-8K",
            "ERNIE-Speed-128K", "ERNIE-Lite-8K", "ERNIE-Tiny-8K", "ERNIE-Bot-8K",
        ),
        lists_models=False,
    ),
    _row(
        id="hunyuan",
        label="Tencent HunYuan (TokenHub)",
        dialect="openai",
        base_url="https://tokenhub.tencentmaas.com/v1",
        key_env=("TOKENHUB_API_KEY", "HUNYUAN_API_KEY", "TENCENT_API_KEY"),
        models=(
            "hy3-preview", "hy-mt2-pro", "hunyuan-role-latest", "deepseek-v4-pro", "deepseek-v4-flash",
            "glm-5.1", "kimi-k2.6", "minimax-m2.7",
        ),
        tiers={"strong": "hy3-preview", "fast": "deepseek-v4-flash", "reasoning": "hy3-preview"},
    ),
    _row(
        id="qwen",
        label="Alibaba Qwen (DashScope)",
        dialect="openai",
        base_url="https://dashscope.aliyuncs.com/compatible-mode/v1",
        key_env=("DASHSCOPE_API_KEY",),
        models=("qwen-plus", "qwen-max", "qwen-turbo", "qwen3-max", "qwen-long", "qwq-plus",
                "text-embedding-v3"),
        tiers={"strong": "qwen-max", "fast": "qwen-turbo", "reasoning": "qwq-plus",
               "embedding": "text-embedding-v3"},
    ),
    _row(
        id="deepseek",
        label="DeepSeek",
        dialect="openai",
        base_url="https://api.deepseek.com",
        key_env=("DEEPSEEK_API_KEY",),
        models=("deepseek-chat", "deepseek-reasoner"),
        tiers={"strong": "deepseek-chat", "fast": "deepseek-chat", "reasoning": "deepseek-reasoner"},
    ),
    _row(
        id="glm",
        label="Zhipu GLM (BigModel)",
        dialect="openai",
        base_url="https://open.bigmodel.cn/api/paas/v4",
        key_env=("ZHIPUAI_API_KEY", "ZAI_API_KEY"),
        models=("glm-4-plus", "glm-4-air", "glm-4-flash", "glm-4.5", "glm-4.6", "embedding-3"),
        tiers={"strong": "glm-4-plus", "fast": "glm-4-flash", "reasoning": "glm-4.6",
               "embedding": "embedding-3"},
    ),
    _row(
        id="kimi",
        label="Moonshot Kimi",
        dialect="openai",
        base_url="https://api.moonshot.cn/v1",
        key_env=("MOONSHOT_API_KEY",),
        models=("moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k", "kimi-k2-0905-preview",
                "kimi-k2-turbo-preview", "kimi-k2-thinking"),
        tiers={"strong": "kimi-k2-0905-preview", "fast": "moonshot-v1-8k", "reasoning": "kimi-k2-thinking"},
    ),
    _row(
        id="siliconflow",
        label="SiliconFlow",
        dialect="openai",
        base_url="https://api.siliconflow.cn/v1",
        key_env=("SILICONFLOW_API_KEY",),
        models=("Qwen/Qwen2.5-7B-Instruct", "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1",
                "Qwen/Qwen3-8B", "THUDM/glm-4-9b-chat", "BAAI/bge-m3"),
        tiers={"strong": "deepseek-ai/DeepSeek-V3", "fast": "Qwen/Qwen2.5-7B-Instruct",
               "reasoning": "deepseek-ai/DeepSeek-R1", "embedding": "BAAI/bge-m3"},
    ),
    _row(
        id="spark",
        label="iFlytek Spark (HTTP)",
        dialect="openai",
        base_url="https://spark-api-open.xf-yun.com/v1",
        key_env=("SPARK_API_PASSWORD",),
        models=("lite", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra"),
        lists_models=False,
        tiers={"strong": "4.0Ultra", "fast": "lite"},
    ),
    _row(
        id="modelscope",
        label="ModelScope API-Inference",
        dialect="openai",
        base_url="https://api-inference.modelscope.cn/v1",
        # ModelScope calls it an "SDK token"; LangChain and CAMEL read MODELSCOPE_SDK_TOKEN.
        key_env=("MODELSCOPE_API_KEY", "MODELSCOPE_SDK_TOKEN", "MODELSCOPE_API_TOKEN"),
        models=("Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-32B", "deepseek-ai/DeepSeek-V3",
                "deepseek-ai/DeepSeek-R1"),
        tiers={"strong": "Qwen/Qwen2.5-72B-Instruct", "fast": "Qwen/Qwen3-32B",
               "reasoning": "deepseek-ai/DeepSeek-R1"},
    ),
    _row(
        id="doubao",
        label="Volcengine Ark (Doubao)",
        dialect="openai",
        base_url="https://ark.cn-beijing.volces.com/api/v3",
        key_env=("ARK_API_KEY", "VOLCENGINE_API_KEY"),
        models=("doubao-seed-1-6-250615", "doubao-1-5-pro-32k-250115", "doubao-1-5-lite-32k-250115",
                "doubao-embedding-text-240715"),
        tiers={"strong": "doubao-seed-1-6-250615", "fast": "doubao-1-5-lite-32k-250115",
               "reasoning": "doubao-seed-1-6-250615", "embedding": "doubao-embedding-text-240715"},
    ),
    _row(
        id="hf",
        label="Hugging Face Inference Providers",
        dialect="openai",
        base_url="https://router.huggingface.co/v1",
        key_env=("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
        models=("Qwen/Qwen2.5-72B-Instruct", "deepseek-ai/DeepSeek-V3-0324", "meta-llama/Llama-3.3-70B-Instruct"),
        tiers={"strong": "deepseek-ai/DeepSeek-V3-0324", "fast": "Qwen/Qwen2.5-72B-Instruct"},
    ),
    _row(
        id="tgi",
        label="Text Generation Inference (self-hosted)",
        dialect="openai",
        base_url="http://127.0.0.1:3000/v1",
        key_env=("TGI_API_KEY",),
        key_required=False,
        models=("tgi",),  # TGI replaces "tgi" with the model it serves
    ),
    _row(
        id="ollama",
        label="Ollama",
        dialect="ollama",
        base_url="http://127.0.0.1:11434",
        key_required=False,
        base_url_env="OLLAMA_HOST",
        models=("qwen2.5:7b", "deepseek-r1:7b", "llama3.2"),
    ),
    _row(
        id="vllm",
        label="vLLM (self-hosted)",
        dialect="openai",
        base_url="http://127.0.0.1:8000/v1",
        key_env=("VLLM_API_KEY",),
        key_required=False,
        models=("Qwen/Qwen2.5-7B-Instruct",),
    ),
    _row(
        id="llamacpp",
        label="llama.cpp server",
        dialect="openai",
        base_url="http://127.0.0.1:8080/v1",
        key_env=("LLAMACPP_API_KEY",),
        key_required=False,
        models=("default",),  # llama-server answers with whatever model it loaded
    ),
    _row(
        id="local",
        label="Local GGUF (in-process llama-cpp-python)",
        dialect="local",
        base_url="",
        key_required=False,
        model_path_env="NBLLM_LOCAL_MODEL",
        models=("gguf",),
        lists_models=False,
    ),
    _row(
        id="opennmt",
        label="OpenNMT-py translation server",
        dialect="opennmt",
        base_url="http://127.0.0.1:5000/translator",
        key_required=False,
        models=("100",),  # the model id from the server's conf.json
    ),
    _row(
        id="openai",
        label="OpenAI",
        dialect="openai",
        base_url="https://api.openai.com/v1",
        key_env=("OPENAI_API_KEY",),
        base_url_env="OPENAI_BASE_URL",
        models=("gpt-4o-mini", "gpt-4o", "o3-mini", "text-embedding-3-small"),
        tiers={"strong": "gpt-4o", "fast": "gpt-4o-mini", "reasoning": "o3-mini",
               "embedding": "text-embedding-3-small"},
    ),
)
