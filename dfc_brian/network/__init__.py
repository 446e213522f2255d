"""The DFC network as Brian2 objects (groups, synapses, monitors, schedule); see :mod:`.build`."""

from dfc_brian.network.build import (
    ORDER,
    add_monitors,
    connect_feedback,
    connect_forward,
    connect_softmax,
    make_clocks,
    make_controller,
    make_input,
    make_layer,
)

__all__ = [
    "ORDER",
    "add_monitors",
    "connect_feedback",
    "connect_forward",
    "connect_softmax",
    "make_clocks",
    "make_controller",
    "make_input",
    "make_layer",
]
