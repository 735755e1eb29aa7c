"""Tests of the convolutional component network ``conv`` (spec 5.1, 5.3, 5.4), and of RNN-EM's
recurrent layer between its encoder and decoder (the spec's parameter counts are the pair's)."""

from __future__ import annotations

import math

import pytest
import torch
from grouping_plugins import conv
from grouping_plugins.conv import ConvNetwork
from grouping_plugins.gaussian import GaussianLikelihood
from grouping_plugins.rnn_em import RNNEM
from pydantic import ValidationError
from torch import nn

from grouping.plugin_api.interfaces import Network, NetworkSpec, PluginConfig

SHAPES = ConvNetwork.Config()  # spec 5.3, flying shapes
MNIST = ConvNetwork.Config(encoder_channels=(32, 64, 128), hidden=250, input_norm=True)  # 5.4
#: identity activation: the updater's psi is the network's raw output, so checks stay exact
GAUSS = GaussianLikelihood(GaussianLikelihood.Config())


def build(
    config: ConvNetwork.Config = SHAPES,
    shape: tuple[int, int, int] = (28, 28, 1),
    encoder: bool = True,
    seed: int = 0,
) -> ConvNetwork:
    torch.manual_seed(seed)
    return ConvNetwork(config, NetworkSpec(image_shape=shape, encoder=encoder))


def rnn_em(
    config: ConvNetwork.Config = SHAPES, shape: tuple[int, int, int] = (28, 28, 1), seed: int = 0
) -> RNNEM:
    """The conv network under RNN-EM, which owns the recurrent layer (``cell``, ``norm``)."""
    net = build(config, shape, seed=seed)
    return RNNEM(PluginConfig(), net, GAUSS)


def count(net: nn.Module | None) -> int:
    return sum(p.numel() for p in net.parameters()) if net is not None else 0


@pytest.mark.parametrize(
    ("config", "shape"),
    [(SHAPES, (28, 28, 1)), (MNIST, (24, 24, 1)), (SHAPES, (32, 32, 3))],
    ids=["shapes-28x28x1", "mnist-24x24x1", "rgb-32x32x3"],
)
def test_output_shapes(config: ConvNetwork.Config, shape: tuple[int, int, int]) -> None:
    upd = rnn_em(config, shape)
    net = upd.network
    b, k = 2, 3
    u = torch.randn(b, k, *shape)  # (B, K, H, W, C)
    state = upd.initial_state(b, k, u.device, u.dtype)  # (B, K, S)
    assert state.shape == (b, k, config.hidden) and net.state_size == config.hidden
    assert net.encode(u.flatten(0, 1)).shape == (b * k, net.encoding_size)
    assert net.encoding_size == config.encoder_fc
    psi, new_state = upd(u, state)
    assert psi.shape == (b, k, *shape)
    assert new_state.shape == (b, k, config.hidden)
    assert net.decode(new_state.flatten(0, 1)).shape == (b * k, *shape)
    assert torch.isfinite(psi).all()


def test_parameter_counts_match_spec() -> None:
    assert count(rnn_em(SHAPES, (28, 28, 1))) == 3_403_389  # spec 5.3
    assert count(rnn_em(MNIST, (24, 24, 1))) == 1_835_091  # spec 5.4


def test_parameter_breakdown_flying_shapes() -> None:
    upd = rnn_em()
    net = upd.network
    assert net.encoder_convs is not None and net.encoder_fc is not None
    assert count(net.encoder_convs) + count(net.encoder_fc) == 1_640_736
    assert count(upd.cell) + count(upd.norm) == 61_500  # the updater's recurrent layer
    assert count(net.decoder_fc) + count(net.decoder_convs) == 1_701_153
    assert count(net) == 1_640_736 + 1_701_153  # the network holds no recurrence


def test_forward_decodes_the_layer_normed_output_path() -> None:
    upd = rnn_em(MNIST, (24, 24, 1)).eval()
    net = upd.network
    u = torch.randn(2, 2, 24, 24, 1)
    state = torch.rand(2, 2, 250)
    psi, h = upd(u, state)
    assert upd.norm is not None and net.layer_norm
    a = upd.cell(torch.cat([net.encode(u.flatten(0, 1)), state.flatten(0, 1)], dim=1))
    torch.testing.assert_close(h.flatten(0, 1), torch.sigmoid(a), rtol=0, atol=0)
    raw = net.decode(torch.sigmoid(upd.norm(a)))
    torch.testing.assert_close(psi.flatten(0, 1), raw, rtol=0, atol=0)
    # without layer norm the decoder reads the new state itself
    plain = rnn_em(ConvNetwork.Config(layer_norm=False)).eval()
    assert plain.norm is None
    psi, h = plain(torch.randn(1, 2, 28, 28, 1), torch.zeros(1, 2, 100))
    torch.testing.assert_close(
        psi.flatten(0, 1), plain.network.decode(h.flatten(0, 1)), rtol=0, atol=0
    )


def test_rnn_is_one_affine_map_of_encoder_output_and_state() -> None:
    upd = rnn_em()
    u = torch.randn(1, 3, 28, 28, 1)
    state = torch.rand(1, 3, 100)
    e = upd.network.encode(u.flatten(0, 1))
    expected = e @ upd.cell.weight[:, :512].T + state.flatten(0, 1) @ upd.cell.weight[:, 512:].T
    _, h = upd(u, state)
    torch.testing.assert_close(h.flatten(0, 1), torch.sigmoid(expected + upd.cell.bias))


def test_without_encoder_builds_decoder_only() -> None:
    full = build()
    net = build(encoder=False)
    assert net.encoder_convs is None and net.encoder_fc is None
    assert count(net) == 1_701_153  # the decoder alone
    assert count(net) < count(full)
    raw = net.decode(torch.randn(2, 100))
    assert raw.shape == (2, 28, 28, 1)
    with pytest.raises(RuntimeError, match="encoder=False"):
        net.encode(torch.zeros(2, 28, 28, 1))


def test_init_zero_biases_and_xavier_bounds() -> None:
    upd = rnn_em(MNIST, (24, 24, 1))
    weights = 0
    for module in upd.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            weights += 1
            assert module.bias is not None and torch.count_nonzero(module.bias) == 0
            w = module.weight
            receptive = w[0, 0].numel() if w.ndim == 4 else 1
            fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert w.abs().max() <= bound
            # uniform over the whole Glorot range, not PyTorch's narrower default
            assert w.abs().max() > 0.9 * bound
        elif isinstance(module, nn.LayerNorm | nn.GroupNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
            assert module.eps == 1e-12
    assert weights == 3 + 1 + 1 + 2 + 3  # enc convs, enc fc, rnn, dec fcs, dec convs


def test_tf_style_layer_norm_modules() -> None:
    upd = rnn_em()
    kinds = [type(m) for m in upd.modules() if isinstance(m, nn.LayerNorm | nn.GroupNorm)]
    # enc: 2 conv maps + fc; rnn output (the updater's); dec: 2 fc + 1 conv map (the last has none)
    assert kinds.count(nn.GroupNorm) == 3 and kinds.count(nn.LayerNorm) == 4
    assert all(m.num_groups == 1 for m in upd.modules() if isinstance(m, nn.GroupNorm))
    plain = rnn_em(ConvNetwork.Config(layer_norm=False))
    assert not any(isinstance(m, nn.LayerNorm | nn.GroupNorm) for m in plain.modules())
    assert plain(torch.randn(1, 2, 28, 28, 1), torch.zeros(1, 2, 100))[0].shape == (1, 2, 28, 28, 1)


def test_input_norm_standardises_each_copy() -> None:
    net = build(MNIST, (24, 24, 1))
    u = torch.rand(6, 24, 24, 1, dtype=torch.float64) * torch.arange(1, 7).view(6, 1, 1, 1) + 3
    out = net.normalize_input(u).reshape(6, -1)
    torch.testing.assert_close(out.mean(1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(out.std(1, unbiased=False), torch.ones(6, dtype=torch.float64))


def test_input_norm_constant_input_is_finite() -> None:
    upd = rnn_em(MNIST, (24, 24, 1))
    u = torch.full((3, 24, 24, 1), 0.5, requires_grad=True)
    assert torch.all(upd.network.normalize_input(u) == 0)
    raw, state = upd(u.unsqueeze(0), torch.zeros(1, 3, 250))
    assert torch.isfinite(raw).all() and torch.isfinite(state).all()
    raw.sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()


def test_input_norm_off_by_default() -> None:
    net = build()
    u = torch.randn(2, 28, 28, 1)
    x = net.normalize_input(u)
    assert not torch.allclose(net.encode(u), net.encode(x))


@pytest.mark.parametrize("shape", [(28, 26, 1), (30, 28, 1)])
def test_bad_image_size_raises(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=rf"{shape[0]}x{shape[1]}x1.*2\*\*2 = 4"):
        build(SHAPES, shape)


def test_deeper_encoder_needs_larger_multiple() -> None:
    with pytest.raises(ValueError, match=r"28x28x1.*2\*\*3 = 8"):
        build(MNIST, (28, 28, 1))  # 28 is not a multiple of 8


def test_config_validation() -> None:
    for bad in (
        {"hidden": 0},
        {"encoder_channels": ()},
        {"encoder_channels": (32, -1)},
        {"kernel": 0},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            ConvNetwork.Config(**bad)
    with pytest.raises(ValidationError):
        SHAPES.hidden = 5  # type: ignore[misc]


def test_gradient_reaches_every_parameter() -> None:
    upd = rnn_em(MNIST, (24, 24, 1))
    u = torch.randn(2, 2, 24, 24, 1)
    state = torch.randn(2, 2, 250)
    raw, new_state = upd(u, state)
    (raw.square().sum() + new_state.sum()).backward()
    for name, p in upd.named_parameters():
        assert p.grad is not None, name
        assert torch.count_nonzero(p.grad) > 0, name


def test_copies_are_independent() -> None:
    upd = rnn_em().eval()
    u = torch.randn(2, 2, 28, 28, 1)
    state = torch.randn(2, 2, 100)
    raw, a = upd(u, state)
    raw1, a1 = upd(u[1:2, :1], state[1:2, :1])  # one sample's one component alone
    torch.testing.assert_close(raw1, raw[1:2, :1])
    torch.testing.assert_close(a1, a[1:2, :1])


@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_resize_conv_equals_nearest_resize_then_same_conv(kernel: int) -> None:
    """The sub-pixel form of "r_conv" is exact: same output and same gradients (input, weight,
    bias) as resizing x2 by nearest neighbour and convolving, in float64."""
    torch.manual_seed(kernel)
    up = conv._UpConv(5, 3, kernel).double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)  # (N, C, H, W)
    plain = up.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
    fast = up(x)
    assert fast.shape == plain.shape == (2, 3, 14, 12)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    g = torch.randn_like(plain)
    wrt = [x, up.conv.conv.weight, up.conv.conv.bias]
    for a, b in zip(
        torch.autograd.grad((plain * g).sum(), wrt),
        torch.autograd.grad((fast * g).sum(), wrt),
        strict=True,
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-11)


def test_resize_conv_keeps_the_plain_layers_parameters() -> None:
    """Checkpoints do not see the sub-pixel form: the state dict holds only the conv's weights."""
    up = conv._UpConv(4, 2, 4)
    assert list(up.state_dict()) == ["conv.conv.weight", "conv.conv.bias"]


def test_resize_conv_output_is_fp32_under_bf16_autocast() -> None:
    """Only the product is bf16 (grouping.precision): the layer hands fp32 to what follows."""
    up = conv._UpConv(4, 2, 4)
    x = torch.randn(3, 4, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = up(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, up(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize(("channels", "kernel"), [(1, 4), (3, 4), (2, 2), (1, 6)])
def test_space_to_depth_conv_equals_the_strided_conv(channels: int, kernel: int) -> None:
    """The first encoder layer's space-to-depth form gives the plain strided conv, and its grads."""
    layer = conv._SameConv(channels, 5, kernel, stride=2).double()
    assert layer.space_to_depth
    x = torch.randn(2, channels, 8, 6, dtype=torch.float64, requires_grad=True)  # (N, C, H, W)
    plain = layer.conv(nn.functional.pad(x, layer.pad))
    fast = layer(x)
    assert fast.shape == plain.shape == (2, 5, 4, 3)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    g = torch.randn_like(plain)
    wrt = [x, layer.conv.weight, layer.conv.bias]
    for a, b in zip(
        torch.autograd.grad((plain * g).sum(), wrt),
        torch.autograd.grad((fast * g).sum(), wrt),
        strict=True,
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-11)


@pytest.mark.parametrize(("channels", "kernel", "stride"), [(8, 4, 2), (8, 3, 1), (8, 4, 1)])
def test_same_conv_pads_as_tf_same(channels: int, kernel: int, stride: int) -> None:
    """Symmetric padding inside the conv, asymmetric by F.pad: both are TF SAME."""
    layer = conv._SameConv(channels, 3, kernel, stride=stride).double()
    x = torch.randn(2, channels, 8, 6, dtype=torch.float64)
    w, b = layer.conv.weight, layer.conv.bias
    want = nn.functional.conv2d(nn.functional.pad(x, layer.pad), w, b, stride=stride)
    assert layer.inner == (layer.pad[0] == layer.pad[1])
    torch.testing.assert_close(layer(x), want, rtol=0, atol=1e-12)
    assert want.shape[-2:] == (8 // stride, 6 // stride)


def test_space_to_depth_only_for_few_input_channels() -> None:
    """Wide inputs, stride 1 and odd kernels keep the plain conv; the parameters never change."""
    assert not conv._SameConv(conv.SPACE_TO_DEPTH_CHANNELS + 1, 4, 4, stride=2).space_to_depth
    assert not conv._SameConv(1, 4, 4, stride=1).space_to_depth
    assert not conv._SameConv(1, 4, 3, stride=2).space_to_depth
    assert list(conv._SameConv(1, 4, 4, stride=2).state_dict()) == ["conv.weight", "conv.bias"]
    first = build(ConvNetwork.Config()).encoder_convs[0][0]  # type: ignore[index]
    assert first.space_to_depth


def test_space_to_depth_output_is_fp32_under_bf16_autocast() -> None:
    layer = conv._SameConv(1, 4, 4, stride=2)
    x = torch.randn(3, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, layer(x), rtol=0.05, atol=0.05)


def test_registers_through_hook() -> None:
    got: list[type] = []
    conv.register_networks(register=got.append)
    assert got == [ConvNetwork]
    assert issubclass(ConvNetwork, Network)
    assert ConvNetwork.kind == "network" and ConvNetwork.name == "conv"
    assert ConvNetwork.description and "\n" not in ConvNetwork.description
