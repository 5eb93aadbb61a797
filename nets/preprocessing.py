"""The networks' input normalisation constants, without torch.

Kept apart from :mod:`nets.inception` so that configs (``detector.config``) and the command
lines that only read them do not import torch (tools/detect.py's prefetch worker, a spawned
process, imports that script again and should start in well under a second).
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on the 0..1 pixel scale
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_GOOGLENET_MEAN = (0.5, 0.5, 0.5)  # what torchvision's ported ImageNet weights expect
TORCHVISION_GOOGLENET_STD = (0.5, 0.5, 0.5)
