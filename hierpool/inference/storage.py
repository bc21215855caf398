"""Saving and loading fits. A fit is an ``xr.DataTree``; hierpool's attrs travel with it."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import xarray as xr

from hierpool.core import names as N

__all__ = ["save", "load"]


def _format(path: Path) -> str:
    return "zarr" if path.suffix == ".zarr" else "netcdf"


def save(dt: xr.DataTree, path, *, overwrite: bool = False) -> Path:
    """Write a fit to ``path``: netCDF (``.nc``, via h5netcdf) or Zarr (a ``.zarr`` folder).

    Parameters
    ----------
    dt : xarray.DataTree
        A fit returned by :func:`hierpool.fit`.
    path : str or Path
    overwrite : bool
        Replace an existing file; by default an existing path is an error.

    Examples
    --------
    >>> hp.save(dt, "fit.nc")  # doctest: +SKIP
    >>> dt2 = hp.load("fit.nc")  # doctest: +SKIP
    """
    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"dt must be an xarray.DataTree returned by hp.fit; got {type(dt).__name__}.")
    if N.ATTR_VARIANT not in dt.attrs:
        raise ValueError("dt has no 'hierpool_variant' attr: it was not produced by hp.fit.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"path={str(path)!r} exists; pass overwrite=True to replace it.")
    if _format(path) == "zarr":
        dt.to_zarr(path, mode="w")
    else:
        if path.exists():
            os.remove(path)
        dt.to_netcdf(path, engine="h5netcdf")
    return path


def load(path) -> xr.DataTree:
    """Read a fit written by :func:`save`, fully into memory, and check it is a hierpool fit."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path={str(path)!r} does not exist.")
    if _format(path) == "zarr":
        dt = xr.open_datatree(path, engine="zarr")
    else:
        dt = xr.open_datatree(path, engine="h5netcdf")
    dt = dt.load()
    dt.close()
    if N.ATTR_VARIANT not in dt.attrs:
        raise ValueError(f"{str(path)!r} holds no hierpool fit (no 'hierpool_variant' attr).")
    from hierpool.core.version import __version__

    saved = str(dt.attrs.get(N.ATTR_VERSION, "?"))
    if saved.split(".")[0] != __version__.split(".")[0]:
        warnings.warn(f"{str(path)!r} was written by hierpool {saved}; this is {__version__}.", stacklevel=2)
    json.loads(dt.attrs[N.ATTR_SETTINGS])  # settings must parse
    return dt
