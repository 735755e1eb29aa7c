"""Figures: grouping figures of a trained model and training curves (matplotlib, Agg)."""
