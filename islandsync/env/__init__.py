"""The notebook environment: which platform this is (profiles of Kaggle, Colab, Paperspace,
a laptop) and where its bucket credentials come from."""
