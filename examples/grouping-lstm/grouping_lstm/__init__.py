"""grouping-lstm: an example third-party plugin package for grouping, an updater and a network.

It provides two plugins, each a module registered through the ``grouping`` entry-point group:

* ``lstm-em`` (:mod:`grouping_lstm.updater`): RNN-EM with an LSTM M-step; the state it carries
  between EM steps is (h, c), concatenated into one (N, 2S) tensor;
* ``lstm-fc`` (:mod:`grouping_lstm.network`): the network it drives, an ``nn.LSTMCell`` on the flat
  masked difference and a linear decoder to the pixels.
"""

__version__ = "0.1.0"
