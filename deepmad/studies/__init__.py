"""The paper's design studies and pictures of designs (torch-free).

``sweep``: one quantity of the program (ρ0, α5, the guidelines, a FLOPs family, the resolution) swept over a
list, every design solved and proven as ``deepmad design`` does, the paper's printed accuracy beside the rows it
reports (Tables 1, 2, 3, 7, 8). ``draw``: a network as a diagram, with the entropy and ρ of each prefix; ``page``:
a design as one self-contained HTML page. The pictures need matplotlib (``pip install 'deepmad[plot]'``),
imported only when a picture is drawn.
"""
