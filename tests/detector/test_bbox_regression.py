"""detector.bbox_regression: R-CNN's targets invert exactly; ridge recovers a linear map."""
import torch

from detector.bbox_regression import CODER, BoxRegressor, fit_regressor


def test_encode_decode_round_trip_and_known_values():
    p = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), 20 x 40
    g = torch.tensor([[12.0, 16.0, 52.0, 56.0]])  # centre (32, 36), 40 x 40
    t = CODER.encode(g, p)
    assert torch.allclose(t, torch.tensor([[12 / 20, -4 / 40, torch.log(torch.tensor(2.0)), 0.0]]))
    assert torch.allclose(CODER.decode(t[:, None, :], p[:, None])[:, 0], g, atol=1e-5)


def test_ridge_recovers_a_linear_relation():
    g = torch.Generator().manual_seed(0)
    n, c = 400, 6
    feats = torch.randn(n, c, generator=g)
    props = torch.rand(n, 2, generator=g) * 50
    props = torch.cat([props, props + 10 + torch.rand(n, 2, generator=g) * 20], 1)
    true_w = torch.randn(c, 4, generator=g) * 0.05
    labels = torch.zeros(n, dtype=torch.int64)
    gt = CODER.decode((feats @ true_w)[:, None, :], props[:, None])[:, 0]
    reg = fit_regressor(feats, props, gt, labels, num_classes=2, ridge_lambda=1e-3)
    pred = reg.predict(feats, props)
    assert torch.allclose(pred[:, 0], gt, atol=1e-2)
    assert torch.allclose(pred[:, 1], props, atol=1e-5)  # a class without pairs: identity
    again = BoxRegressor.from_dict(reg.to_dict())
    assert torch.equal(again.predict(feats, props), pred)
