"""Chunked selective scan against the sequential reference: values, gradients, stability, dispatch, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from volrob.errors import ConfigError, DataError
from volrob.models.mamba import scan
from volrob.models.mamba.scan import cuda_kernel_for, selective_scan, selective_scan_ref

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(
    seed: int, batch: int, dim: int, state: int, length: int, dtype: torch.dtype = torch.float64
) -> dict[str, torch.Tensor]:
    """Random inputs with Mamba-like ranges (negative A, delta around softplus(0))."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype)

    return {
        "u": rand(batch, dim, length),
        "delta": 0.5 * rand(batch, dim, length),
        "A": -torch.rand(dim, state, generator=g, dtype=dtype) * state - 0.1,
        "B": rand(batch, state, length),
        "C": rand(batch, state, length),
        "D": rand(dim),
        "z": rand(batch, dim, length),
        "delta_bias": 0.3 * rand(dim),
    }


def select(inputs: dict[str, torch.Tensor], use_d: bool, use_z: bool, use_bias: bool) -> dict[str, torch.Tensor]:
    keep = {"u", "delta", "A", "B", "C"} | {k for k, on in (("D", use_d), ("z", use_z), ("delta_bias", use_bias)) if on}
    return {k: v.clone().requires_grad_() for k, v in inputs.items() if k in keep}


FLAGS = [(True, True, True, True), (False, False, False, False), (True, False, True, False), (False, True, False, True)]


@pytest.mark.parametrize("length", [1, 7, 8, 9, 30])
@pytest.mark.parametrize(("use_d", "use_z", "use_bias", "softplus"), FLAGS)
def test_values_and_gradients_match_reference(
    length: int, use_d: bool, use_z: bool, use_bias: bool, softplus: bool
) -> None:
    args = select(make_inputs(length, 2, 3, 4, length), use_d, use_z, use_bias)
    cotangent = torch.randn(2, 3, length, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y_ref = selective_scan_ref(**args, delta_softplus=softplus)
    y = selective_scan(**args, delta_softplus=softplus, chunk_size=8)
    torch.testing.assert_close(y, y_ref, rtol=1e-11, atol=1e-12)
    names = list(args)
    g_ref = torch.autograd.grad(y_ref, [args[k] for k in names], cotangent)
    g = torch.autograd.grad(y, [args[k] for k in names], cotangent)
    for name, a, b in zip(names, g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11, msg=lambda m, name=name: f"grad {name}: {m}")


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 40),
    chunk=st.integers(1, 45),
    batch=st.integers(1, 2),
    dim=st.integers(1, 3),
    state=st.integers(1, 5),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_property_any_chunk_size_gives_reference(
    length: int, chunk: int, batch: int, dim: int, state: int, flags: tuple[bool, ...], seed: int
) -> None:
    args = select(make_inputs(seed, batch, dim, state, length), *flags[:3])
    with torch.no_grad():
        y_ref = selective_scan_ref(**args, delta_softplus=flags[3])
        y = selective_scan(**args, delta_softplus=flags[3], chunk_size=chunk)
    torch.testing.assert_close(y, y_ref, rtol=1e-11, atol=1e-12)


def test_gradcheck_tiny_float64() -> None:
    args = select(make_inputs(3, 1, 2, 3, 5), True, True, True)
    names = list(args)

    def fn(*tensors: torch.Tensor) -> torch.Tensor:
        return selective_scan(**dict(zip(names, tensors, strict=True)), delta_softplus=True, chunk_size=2)

    assert torch.autograd.gradcheck(fn, tuple(args[k] for k in names), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_decays_stay_finite_and_correct(dtype: torch.dtype) -> None:
    """delta * |A| up to ~8000 per step over 300 steps: exp of a raw cumsum difference would overflow."""
    inputs = make_inputs(5, 1, 3, 4, 300, dtype)
    inputs["delta"] = torch.full_like(inputs["delta"], 40.0)
    inputs["A"] = -torch.arange(1, 5, dtype=dtype).repeat(3, 1) * 50.0
    args = select(inputs, True, False, False)
    y = selective_scan(**args, chunk_size=64)
    y_ref = selective_scan_ref(**args)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref)
    grads = torch.autograd.grad(y.sum(), list(args.values()))
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_float32_precision_after_a_large_step() -> None:
    """One huge decay early in a chunk must not cost the small steps after it their precision."""
    inputs = make_inputs(6, 1, 4, 8, 128)
    inputs["delta"] = torch.full_like(inputs["delta"], 0.01)
    inputs["delta"][..., 3] = 200.0
    inputs["delta"][..., 40] = 300.0
    args = select(inputs, False, False, False)
    with torch.no_grad():
        exact = selective_scan_ref(**args)
        y32 = selective_scan(**{k: v.float() for k, v in args.items()}, chunk_size=64)
    assert (y32.double() - exact).abs().max() <= 2e-6 * exact.abs().max()


def test_no_grad_and_grad_paths_agree() -> None:
    args = select(make_inputs(7, 2, 3, 4, 20), True, True, True)
    y = selective_scan(**args, delta_softplus=True, chunk_size=6)
    with torch.no_grad():
        y_ng = selective_scan(**args, delta_softplus=True, chunk_size=6)
    assert torch.equal(y.detach(), y_ng)


def test_same_inputs_same_output() -> None:
    a = selective_scan(**make_inputs(8, 1, 2, 3, 17), chunk_size=4)
    b = selective_scan(**make_inputs(8, 1, 2, 3, 17), chunk_size=4)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shape_is_named(name: str) -> None:
    args = make_inputs(9, 2, 3, 4, 6)
    args[name] = torch.zeros(*(s + 1 for s in args[name].shape), dtype=torch.float64)
    # u fixes (batch, dim, L): when u is the odd one out, the first disagreeing argument is named next to u's shape
    pattern = "delta must have shape .* for u of shape" if name == "u" else f"selective scan: {name} must have shape"
    for fn in (selective_scan, selective_scan_ref):
        with pytest.raises(DataError, match=pattern):
            fn(**args)


@pytest.mark.parametrize(("name", "pattern"), [("u", r"u must be \(batch, dim, L\)"), ("A", r"A must be \(dim, N\)")])
def test_wrong_rank(name: str, pattern: str) -> None:
    args = make_inputs(9, 2, 3, 4, 6)
    args[name] = args[name][0]
    with pytest.raises(DataError, match=pattern):
        selective_scan(**args)


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True, "8"])
def test_bad_chunk_size(chunk: object) -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        selective_scan(**make_inputs(9, 1, 2, 2, 4), chunk_size=chunk)  # type: ignore[arg-type]


def fake_kernel(*args: object, **kwargs: object) -> str:
    return "fused"


@pytest.mark.parametrize(("device", "dtype", "available", "expected"), [
    *[("cuda", dt, True, True) for dt in scan.KERNEL_DTYPES],
    ("cuda", torch.float64, True, False),
    ("cuda", torch.float32, False, False),
    ("cpu", torch.float32, True, False),
    ("meta", torch.float32, True, False),
])
def test_dispatch_decision(
    monkeypatch: pytest.MonkeyPatch, device: str, dtype: torch.dtype, available: bool, expected: bool
) -> None:
    monkeypatch.setattr(scan, "_load_mamba_ssm_kernel", lambda: fake_kernel if available else None)
    assert (cuda_kernel_for(torch.device(device), dtype) is fake_kernel) is expected
    with scan.pytorch_scan():  # the comparison switch: never the kernel inside it
        assert cuda_kernel_for(torch.device(device), dtype) is None
    assert (cuda_kernel_for(torch.device(device), dtype) is fake_kernel) is expected


def test_dispatch_hands_all_arguments_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def kernel(*args: object, **kwargs: object) -> str:
        calls.append((args, kwargs))
        return "fused"

    monkeypatch.setattr(scan, "cuda_kernel_for", lambda device, dtype: kernel)
    args = make_inputs(10, 1, 2, 3, 5)
    assert selective_scan(**args, delta_softplus=True) == "fused"
    (positional, keywords), = calls
    assert all(a is args[k] for a, k in zip(positional, ("u", "delta", "A", "B", "C"), strict=True))
    assert keywords["D"] is args["D"] and keywords["z"] is args["z"] and keywords["delta_bias"] is args["delta_bias"]
    assert keywords["delta_softplus"] is True


def test_missing_mamba_ssm_means_no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    scan._load_mamba_ssm_kernel.cache_clear()
    monkeypatch.setattr(scan.importlib, "import_module", refuse)
    try:
        assert scan._load_mamba_ssm_kernel() is None
    finally:
        scan._load_mamba_ssm_kernel.cache_clear()

