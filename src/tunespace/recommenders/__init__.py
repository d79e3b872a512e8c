"""Recommenders behind one interface; importing this package registers every built-in model by name."""

from tunespace.recommenders.base import RECOMMENDERS, Recommender, get_recommender, register
from tunespace.recommenders.bert4rec import Bert4Rec, RandomBert4Rec
from tunespace.recommenders.blend import PopularityBlend
from tunespace.recommenders.content_ease import ContentEASE
from tunespace.recommenders.ease import EASE
from tunespace.recommenders.itemknn import ItemKNN
from tunespace.recommenders.knn import ContentKNN
from tunespace.recommenders.mapped_ease import MappedEASE
from tunespace.recommenders.popularity import Popularity
from tunespace.recommenders.shallow import RandomShallowNet, ShallowNet

__all__ = ["RECOMMENDERS", "Recommender", "get_recommender", "register", "Bert4Rec", "ContentEASE", "ContentKNN",
           "EASE", "ItemKNN", "MappedEASE", "Popularity", "PopularityBlend", "RandomBert4Rec", "RandomShallowNet",
           "ShallowNet"]
