"""The design core: the DeepMAD program and its solvers, in numpy (no torch).

``spec`` (network descriptions), ``blocks`` (closed-form counts), ``theory`` (entropy, effectiveness),
``budget`` (the design space and the program of Eq. 5 on candidate rows), ``analysis`` (what a network is under
the program), ``solver`` (the lns search), ``bound`` (the branch and bound that proves the optimum),
``evolution`` (the authors' evolutionary baseline), ``exact`` (search, then proof), ``result``, ``presets``,
``reference`` (torchvision's networks), ``tinynas`` (the authors' released structures and score), ``paper``
(the paper's tables), ``mlp`` (Section 3: MLP specs, their entropy and ρ, the exact MLP design).
"""
