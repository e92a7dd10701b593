"""One hand-written paper whose paragraphs the answer-overlap tests (the rule in data/, its use in the
fit stage) reason about by hand: which paragraph holds which answer's tokens."""

PASSAGES = {
    "p/0": "We introduce a new dataset of scientific papers.",
    "p/1": "The model is trained on the Penn Treebank with a BiLSTM encoder.",
    "p/2": "Results on the Penn Treebank improve by two points.",
    "p/3": "Our encoder is a BiLSTM with attention over tokens.",
    "p/4": "Experiments use English and German corpora.",
}
