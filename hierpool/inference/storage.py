"""Saving and loading fits. A fit is an ``xr.DataTree``; hierpool's attrs travel with it."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import xarray as xr

from hierpool.core import names as N

__all__ = ["save", "load"]


#: File suffixes and the format each one means: netCDF-4 (HDF5, through h5netcdf) or a Zarr folder.
SUFFIXES = {".nc": "netcdf", ".nc4": "netcdf", ".h5": "netcdf", ".hdf5": "netcdf", ".zarr": "zarr"}


def _format(path: Path, arg: str = "path") -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{arg}={str(path)!r}: a fit is written as netCDF or Zarr, chosen by the suffix; valid suffixes: "
            f"{', '.join(SUFFIXES)} (got {path.suffix or 'none'!r})."
        )
    return fmt


def save(dt: xr.DataTree, path, *, overwrite: bool = False) -> Path:
    """Write a fit to ``path``: netCDF-4 (``.nc``, ``.nc4``, ``.h5``, via h5netcdf) or Zarr (a ``.zarr``
    folder), chosen by the suffix; any other suffix is an error (nothing is written under a misleading name).

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
    fmt = _format(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path={str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"path={str(path)!r} exists; pass overwrite=True to replace it.")
    if fmt == "zarr":
        dt.to_zarr(path, mode="w")
    else:
        if path.exists():
            os.remove(path)
        dt.to_netcdf(path, engine="h5netcdf")
    return path


def load(path) -> xr.DataTree:
    """Read a fit written by :func:`save`, fully into memory, and check it is a hierpool fit."""
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise FileNotFoundError(f"path={str(path)!r} does not exist.")
    try:
        dt = xr.open_datatree(path, engine="zarr" if fmt == "zarr" else "h5netcdf")
    except Exception as err:  # h5py/zarr raise many types for a file that is not theirs
        raise ValueError(
            f"path={str(path)!r} could not be read as {'a Zarr store' if fmt == 'zarr' else 'netCDF-4 (HDF5)'}: "
            f"{type(err).__name__}: {err}. hp.load reads files written by hp.save."
        ) from err
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
