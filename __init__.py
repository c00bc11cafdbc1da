"""Not part of the package: makes ``python -m hvc.segment ...`` work from the folder that holds
a clone named ``hvc`` (docs/install.md).

From there Python finds this folder first and, without this file, imports it as a namespace
package ``hvc``, whose ``hvc.data`` is the dataset folder ``data/`` and which has no
``hvc.segment``: the run fails with "No module named 'hvc.data.palette'". This file points the
package's search path at the real package, ``hvc/`` below it, and runs that package's
``__init__``. From anywhere else (inside the clone, or after ``pip install``) it is never imported.
"""

import os as _os

__path__ = [_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "hvc")]
__file__ = _os.path.join(__path__[0], "__init__.py")
with open(__file__) as _source:
    exec(compile(_source.read(), __file__, "exec"))
del _os, _source
