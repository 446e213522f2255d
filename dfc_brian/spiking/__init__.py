"""Spiking Deep Feedback Control (issue 11): Poisson neurons with basal, apical and somatic
compartments, an analog PI controller and the Urbanczik-Senn-form forward rule, in Brian2."""

from dfc_brian.spiking.params import SpikingParams, namespace

__all__ = ["SpikingParams", "namespace"]
