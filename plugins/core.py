"""Built-in degradations, metrics and datasets."""

import bench
from bench.data import datasets, realnoise, standard
from bench.grid import metrics
from bench.noise import degradations


@bench.hookimpl
def register_degradations(register):
    register("gaussian", degradations.GaussianDegradation,
             description="y = x + sigma * n; levels are sigma in [0, 1] units (k/255 accepted)")
    register("gaussian-map", degradations.GaussianMapDegradation,
             description="y = x + m * n, the std m varying in space, levels are its mean; "
                         "shape=ramp|peaks (FFDNet's demo), low=smallest/largest std (default 0)")
    register("poisson", degradations.PoissonDegradation,
             description="y = Poisson(peak * x) / peak; levels are peaks")
    register("real", degradations.CapturedNoise,
             description="real camera noise: the set's noisy captures, nothing drawn (polyu, cc15, rni15); "
                         "level `captured`")


@bench.hookimpl
def register_metrics(register):
    register("psnr", lambda: metrics.psnr, higher_is_better=True, bounds=(0.0, None),
             description="peak signal-to-noise ratio, data range 1 (skimage's definition)")
    register("ssim", lambda: metrics.ssim, higher_is_better=True, bounds=(-1.0, 1.0),
             description="structural similarity, Wang et al. settings (skimage's definition)")
    register("mse", lambda: metrics.mse, higher_is_better=False, bounds=(0.0, 1.0),
             description="mean squared error")


@bench.hookimpl
def register_datasets(register):
    register("skimage-gray", datasets.skimage_gray,
             description="scikit-image's 10 gray test images (camera, moon, coins, ...)")
    register("skimage-color", datasets.skimage_color,
             description="scikit-image's 5 colour test images (astronaut, chelsea, ...)")
    register("lfw-faces", datasets.lfw_faces,
             description="scikit-image's lfw_subset, 200 gray 25x25; split=train|test|all")
    register("folder:", datasets.folder,
             description="folder:PATH, every PNG/JPEG/TIFF image in PATH")
    for pinned in standard.PINNED_SETS:
        colour = "colour; gray=1 for MATLAB rgb2gray" if pinned.color else "gray"
        register(pinned.name, pinned.factory(), fetch=pinned,
                 description=f"{pinned.folder} ({colour}), fetched and verified by SHA-256")
    for real in realnoise.REAL_NOISE_SETS:
        register(real.name, real.factory(), fetch=real,
                 description=f"{real.folder} real camera noise ({real.source}; colour), for -n real")
    register("urban100", standard.URBAN100.load, fetch=standard.URBAN100,
             description="Urban100 HR (colour; gray=1 for MATLAB rgb2gray), through deepinv")
    for digits in (standard.MNIST, standard.FASHION_MNIST):
        register(digits.name, digits.load, uses_data_root=True, fetch=digits,
                 description=f"{digits.class_name} through torchvision (under --data-root); "
                             "split=train|test")
