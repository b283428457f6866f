"""Small scenario ingredients shared by the property tests (engine, kernels, model)."""

RULES = [
    {"kind": "logistic", "adopt_intercept": -3.0},
    {"kind": "threshold", "lapse": 0.05},
    {"kind": "bass", "p": 0.02, "q": 0.3, "lapse": 0.05},
    {"kind": "independent_cascade", "p": 0.2, "lapse": 0.05},
]
NETWORKS = [
    {"kind": "watts_strogatz", "k": 4, "p": 0.2},
    {"kind": "erdos_renyi", "mean_degree": 3.0},
    {"kind": "barabasi_albert", "m": 2},
    {"kind": "ward_clustered", "mean_degree_in": 3.0, "mean_degree_out": 1.0},
]
