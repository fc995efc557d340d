import numpy as np
import pyarrow as pa

from operators.arrow_tensors import arrow_to_lists, arrow_to_tensor, lists_to_arrow, tensor_to_arrow


def test_matrix_is_a_plain_fixed_size_list():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    column = tensor_to_arrow(array)
    assert column.type == pa.list_(pa.float32(), 4)
    np.testing.assert_array_equal(arrow_to_tensor(column), array)


def test_images_round_trip_through_nested_lists_and_slices():
    images = np.random.default_rng(0).integers(0, 255, (5, 3, 4, 6), dtype=np.uint8)
    column = tensor_to_arrow(images)
    assert column.type == pa.list_(pa.list_(pa.list_(pa.uint8(), 6), 4), 3)
    np.testing.assert_array_equal(arrow_to_tensor(column.slice(2, 2)), images[2:4])
    chunked = pa.chunked_array([column.slice(0, 2), column.slice(2, 3)])
    np.testing.assert_array_equal(arrow_to_tensor(chunked), images)


def test_token_lists_round_trip_including_empty_rows_and_slices():
    rows = [np.array([1, 2, 3], np.int32), np.zeros(0, np.int32), np.array([7], np.int32)]
    column = lists_to_arrow(rows)
    assert column.type == pa.list_(pa.int32())
    back = arrow_to_lists(column)
    assert [r.tolist() for r in back] == [[1, 2, 3], [], [7]]
    assert [r.tolist() for r in arrow_to_lists(column.slice(1, 2))] == [[], [7]]


def test_null_rows_become_zeros():
    column = pa.array([[1.0, 2.0], None, [3.0, 4.0]], pa.list_(pa.float32(), 2))
    assert arrow_to_tensor(column).tolist() == [[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]]
