"""Analyses of trained models: figures and tables that say what a model has learnt."""
