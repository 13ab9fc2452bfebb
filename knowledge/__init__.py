"""Knowledge base: snippet store, embeddings and vector search. (Built by the knowledge issue.)"""
