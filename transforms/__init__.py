"""Reusable Beam steps and the plain functions behind them."""
