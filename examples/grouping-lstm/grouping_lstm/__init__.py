"""grouping-lstm: an example third-party plugin package for grouping, an updater and a network.

It provides two plugins, each a module registered through the ``grouping`` entry-point group:

* ``lstm-em`` (:mod:`grouping_lstm.updater`): RNN-EM with an LSTM M-step for any network; it owns
  an ``nn.LSTMCell`` on the network's encoding, and the state it carries between EM steps is
  (h, c), concatenated into one (B, K, 2S) tensor;
* ``lstm-fc`` (:mod:`grouping_lstm.network`): a network of a flat-pixel encoder and a linear
  decoder from h, the one ``lstm-em`` was first written for.
"""

__version__ = "0.1.0"
