"""SQuAD question answering evaluation: data, features, post-processing, metrics, and the comparison."""
