"""The environment of a run: whether the installed packages can run tf_finetune (checked
before any heavy import), and which CPU it runs on."""

from __future__ import annotations

import importlib.metadata
import platform

from tf_finetune.errors import DependencyError


def check_environment() -> None:
    """Raises `DependencyError` naming the fix when the TF stack cannot work.

    transformers' TF models are Keras 2 models, which need the `tf-keras` package next to
    TensorFlow; transformers 5 removed the TF models altogether.
    """
    versions = {}
    for name in ("tensorflow", "tf-keras", "transformers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise DependencyError(
                f"{name} is not installed. Install tf-finetune's pinned stack: "
                "pip install 'tensorflow==2.21.*' 'tf-keras==2.21.*' 'transformers>=4.53,<4.55'"
            ) from None
    if _major(versions["transformers"]) >= 5:
        raise DependencyError(
            f"transformers {versions['transformers']} has no TensorFlow models. "
            "Install a 4.x release: pip install 'transformers>=4.53,<4.55'"
        )
    if versions["tf-keras"].split(".")[:2] != versions["tensorflow"].split(".")[:2]:
        raise DependencyError(
            f"tf-keras {versions['tf-keras']} does not match tensorflow "
            f"{versions['tensorflow']}. Install the same minor version: "
            f"pip install 'tf-keras=={'.'.join(versions['tensorflow'].split('.')[:2])}.*'"
        )


def _major(version: str) -> int:
    return int(version.split(".")[0])


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


# CPU flags of bfloat16 matrix instructions: AVX-512 BF16 (AMD Zen 4 on, Intel Cooper
# Lake on) and AMX (Intel Sapphire Rapids on).
_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (from /proc/cpuinfo; empty where there is none)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_has_bfloat16_matmul() -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (AVX512_BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in _BFLOAT16_FLAGS)


def _cpuinfo(field: str) -> str | None:
    """The first CPU's `field` in /proc/cpuinfo; None where there is no such file or line."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
