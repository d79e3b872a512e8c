"""Recommenders behind one interface; importing this package registers every built-in model by name."""

from tunespace.recommenders.base import RECOMMENDERS, Recommender, get_recommender, register
from tunespace.recommenders.ease import EASE
from tunespace.recommenders.itemknn import ItemKNN
from tunespace.recommenders.knn import ContentKNN
from tunespace.recommenders.popularity import Popularity

__all__ = ["RECOMMENDERS", "Recommender", "get_recommender", "register", "EASE", "ItemKNN", "ContentKNN",
           "Popularity"]
