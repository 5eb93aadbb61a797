"""The detector a user would pick instead: torchvision's Faster R-CNN, trained from scratch here.

Kept apart from `detector/` so the comparison never shares code paths with the model it judges.
"""
